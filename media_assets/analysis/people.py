"""Group the faces of all media into persons whose ids, names and user corrections survive re-clustering.

Person dossiers are built from the `faces` rows of every media (not per media), so that "who appears
where, and with whom" spans the whole library. Four layers, each a pure function:

1. Quality floor (`cluster_faces`): faces that are too small or too unsure embed poorly and would
   glue different people together; they are kept aside as "unassigned", never guessed.
2. Clustering (`cluster_faces`): agglomerative clustering with average (or complete) linkage over
   euclidean distance in dlib's space, cut at dlib's own 0.6. Single linkage is refused: one
   in-between face (blur, profile) chains two people into one. To scale, the all-pairs step is
   replaced by a radius graph (edges < threshold, from a blocked matrix product): an average- or
   complete-linkage cluster below the threshold never spans two connected components of that
   graph, so running scipy's exact linkage per component gives exactly the global result, in
   memory that grows with the component, not with the library. A component above
   `max_exact_component` faces falls back to Chinese whispers (dlib's face clustering) on its
   graph. Chinese whispers is also selectable as the whole algorithm.
3. Stable ids (`assign_ids`): new clusters inherit the ids of the previous run's clusters by face
   overlap (Jaccard), then by centroid distance (for faces re-numbered by a re-analysis).
4. User decisions (`apply_decisions`): an append-only log (name, merge, split, not-this-person,
   forget person, forget media) replayed on top of every clustering, so a re-cluster never
   overwrites them. Names only ever come from the user.

`build_people` runs all four and returns the dossier tables plus a JSON-able `PeopleState`.

Ids: a new person gets "p-" + the first 10 hex digits of sha1(its smallest face_id) (salted if
taken). No counter has to be kept in step between runs, the same library clustered from
scratch mostly gets the same ids back (so a decision log outlives a lost state), and the state's
`issued_ids` ensures no id is ever given to a second person (decisions that name an id stay
meaningful forever). A person split off by the user gets an id derived from (person, face).

What the state keeps: the clusters of the last run with their ids *before* decisions (the raw layer
that new clusters are matched to — matching against the decided layer would lose a merge as soon
as the clustering separates the two halves again), every id issued, and for forgotten persons
their face_ids plus a sha256 digest of each face's embedding bytes. A face is excluded from all
future clustering if its face_id or its embedding digest matches: the digest also catches the same
face under a new face_id (e.g. faces re-numbered within a keyframe), without keeping any biometric
data (a digest matches only a bit-identical embedding and cannot be compared by distance). A
re-analysis with a different face model produces new embeddings *and* possibly new face_ids; such
faces of a forgotten person would come back unless the caller also deletes or re-forgets them.
"""

from __future__ import annotations

import hashlib
import logging
from collections import Counter, defaultdict
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from media_assets.analysis.params import known_fields

log = logging.getLogger(__name__)

MODEL_ID = "radius-graph-average-linkage-v1"

EMBEDDING_DIM = 128  # dlib's face descriptor
DISTANCE_THRESHOLD = 0.6  # dlib's own: same person below, different above
ALGORITHMS = ("average", "complete", "chinese_whispers")
STATE_VERSION = 1


@dataclass(frozen=True)
class PeopleParams:
    """Settings that change which faces form which persons (config `person_dossiers:`)."""

    distance_threshold: float = DISTANCE_THRESHOLD
    # Shorter box side in px: dlib's ResNet works on 150 px chips; below ~40 px the upscaled chip
    # carries little identity and such faces sit between people.
    min_face_size: int = 40
    min_score: float = 0.7  # detector score; stricter than the faces step's 0.6, which keeps more for search
    # "average" | "complete" (agglomerative, exact per graph component) | "chinese_whispers"
    algorithm: str = "average"
    min_cluster_faces: int = 1  # smaller clusters stay unassigned (e.g. 2: one-off faces are not persons)
    # Graph components larger than this use Chinese whispers (exact linkage needs m^2/2 distances).
    max_exact_component: int = 5000
    seed: int = 0  # Chinese whispers' visiting order
    max_iterations: int = 100  # Chinese whispers' sweeps at most
    representatives: int = 3  # face_ids shown for a person: best score x size

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> PeopleParams:
        """Build from a config mapping; unknown keys belong to other steps and are ignored."""
        return cls(**known_fields(cls, params))


def model_files(params: PeopleParams | None = None) -> list[Path]:
    """No weights: clustering works on the embeddings the faces step made."""
    return []


# ---------------------------------------------------------------------------------------------
# Inputs


@dataclass(frozen=True)
class FaceRow:
    """One face of one keyframe of one media, as the people step sees it (the thumbnail stays in
    the faces table). `face_id` is "<media_key>/<kf>/<face>"."""

    face_id: str
    media: str
    t: float
    kf: int
    box: tuple[float, float, float, float]
    score: float
    embedding: tuple[float, ...]

    @property
    def size(self) -> float:
        """The shorter box side in px."""
        return min(self.box[2] - self.box[0], self.box[3] - self.box[1])


def face_id(media: str, kf: int, face: int) -> str:
    return f"{media}/{kf}/{face}"


def face_rows(media: str, rows: Iterable[Mapping[str, Any]]) -> list[FaceRow]:
    """`FaceRow`s of one media from its `faces_table` rows (`table.to_pylist()`); a row without
    `face` is numbered by its order within its keyframe, as `faces_table` does."""
    out = []
    seen: dict[int, int] = {}
    for r in rows:
        kf = int(r["kf"])
        n = seen.get(kf, 0)
        seen[kf] = n + 1
        face = r.get("face")
        out.append(_face_row({**r, "media": media, "face_id": face_id(media, kf, n if face is None else int(face))}))
    return out


def _face_row(r: FaceRow | Mapping[str, Any]) -> FaceRow:
    if isinstance(r, FaceRow):
        row = r
    else:
        box = tuple(float(v) for v in r["box"])
        if len(box) != 4:
            raise ValueError(f"people: face {r.get('face_id')!r} has a box of {len(box)} values, not 4")
        row = FaceRow(
            face_id=str(r["face_id"]),
            media=str(r["media"]),
            t=float(r["t"]),
            kf=int(r["kf"]),
            box=box,
            score=float(r["score"]),
            embedding=tuple(float(v) for v in r["embedding"]),
        )
    if len(row.embedding) != EMBEDDING_DIM:
        raise ValueError(f"people: face {row.face_id!r} has {len(row.embedding)} embedding values, not {EMBEDDING_DIM}")
    return row


def embedding_digest(embedding: Sequence[float]) -> str:
    """A non-invertible id of one embedding (its float32 bytes): matches the same face again,
    never a merely similar one."""
    return hashlib.sha256(np.asarray(embedding, dtype="<f4").tobytes()).hexdigest()[:32]


# ---------------------------------------------------------------------------------------------
# Clustering


@dataclass(frozen=True, eq=False)
class Clustering:
    """The faces taken into account (all not excluded, including unassigned ones), their
    clusters (sorted face_ids; clusters ordered by their first face_id) and the unassigned faces
    with why: "small", "low_score" (quality floor) or "small_cluster" (< min_cluster_faces).
    `matrix[index[face_id]]` is a face's embedding (float64)."""

    faces: Mapping[str, FaceRow]
    clusters: tuple[tuple[str, ...], ...]
    unassigned: Mapping[str, str]
    matrix: np.ndarray
    index: Mapping[str, int]

    def centroid(self, face_ids: Iterable[str]) -> np.ndarray:
        return np.asarray(self.matrix[[self.index[f] for f in face_ids]].mean(axis=0))


def cluster_faces(
    faces: Iterable[FaceRow | Mapping[str, Any]], params: PeopleParams | None = None, exclude: Collection[str] = ()
) -> Clustering:
    """Quality floor, then clustering. `faces` are `FaceRow`s or mappings with face_id, media, t,
    kf, box, score, embedding (other keys such as thumbnail are ignored); faces whose face_id is
    in `exclude` (forgotten) are dropped entirely. The result does not depend on input order."""
    params = params or PeopleParams()
    _check_params(params)
    rows = sorted((_face_row(f) for f in faces), key=lambda f: f.face_id)
    rows = [f for f in rows if f.face_id not in exclude]
    for a, b in zip(rows, rows[1:], strict=False):
        if a.face_id == b.face_id:
            raise ValueError(f"people: face_id {a.face_id!r} appears twice")
    matrix = np.asarray([f.embedding for f in rows], dtype=np.float64).reshape(len(rows), EMBEDDING_DIM)
    bad = np.flatnonzero(~np.isfinite(matrix).all(axis=1))
    if len(bad):
        raise ValueError(f"people: face {rows[bad[0]].face_id!r} has a non-finite embedding")
    index = {f.face_id: i for i, f in enumerate(rows)}

    unassigned: dict[str, str] = {}
    eligible = []
    for i, f in enumerate(rows):
        if f.size < params.min_face_size:
            unassigned[f.face_id] = "small"
        elif f.score < params.min_score:
            unassigned[f.face_id] = "low_score"
        else:
            eligible.append(i)
    groups = _cluster(matrix[eligible], params) if eligible else []
    clusters = []
    for g in groups:
        ids = tuple(rows[eligible[i]].face_id for i in g)  # eligible is sorted, so ids are too
        if len(ids) < params.min_cluster_faces:
            unassigned.update(dict.fromkeys(ids, "small_cluster"))
        else:
            clusters.append(ids)
    clusters.sort(key=lambda c: c[0])
    return Clustering({f.face_id: f for f in rows}, tuple(clusters), unassigned, matrix, index)


def _check_params(params: PeopleParams) -> None:
    if params.algorithm == "single":
        raise ValueError("people: single linkage chains different people together; use average or complete")
    if params.algorithm not in ALGORITHMS:
        raise ValueError(f"people: unknown algorithm {params.algorithm!r} ({' | '.join(ALGORITHMS)})")
    if not params.distance_threshold > 0:
        raise ValueError(f"people: distance_threshold must be > 0, not {params.distance_threshold}")


def _cluster(x: np.ndarray, params: PeopleParams) -> list[list[int]]:
    """Clusters of the rows of `x` as sorted index lists."""
    from scipy.sparse.csgraph import connected_components

    graph = _radius_graph(x, params.distance_threshold)
    n_comp, labels = connected_components(graph, directed=False)
    order = np.argsort(labels, kind="stable")
    bounds = np.flatnonzero(np.diff(labels[order])) + 1
    out: list[list[int]] = []
    for comp in np.split(order, bounds):
        if len(comp) == 1:
            out.append([int(comp[0])])
            continue
        exact = params.algorithm != "chinese_whispers"
        if exact and len(comp) <= params.max_exact_component:
            out.extend(_linkage_groups(x, comp, params))
            continue
        # Too many linked faces for exact linkage (at library scale a few stray sub-threshold pairs
        # link everyone): Chinese whispers splits the graph into person-sized groups, then exact
        # linkage within each undoes what the voting merged.
        if exact:
            log.info("people: %d linked faces > max_exact_component; Chinese whispers first", len(comp))
        sub_labels = _chinese_whispers(graph[comp][:, comp], params.seed, params.max_iterations)
        for lab in np.unique(sub_labels):
            part = comp[sub_labels == lab]
            if not exact or len(part) == 1:
                out.append(sorted(int(i) for i in part))
            elif len(part) > params.max_exact_component:
                log.warning("people: a group of %d faces stays as Chinese whispers made it", len(part))
                out.append(sorted(int(i) for i in part))
            else:
                out.extend(_linkage_groups(x, part, params))
    return out


def _linkage_groups(x: np.ndarray, idx: np.ndarray, params: PeopleParams) -> list[list[int]]:
    labels = _linkage_labels(x[idx], params.algorithm, params.distance_threshold)
    return [sorted(int(i) for i in idx[labels == lab]) for lab in np.unique(labels)]


def _radius_graph(x: np.ndarray, radius: float, block: int = 2048) -> Any:
    """Symmetric CSR adjacency of the pairs closer than `radius` (exact at the threshold).

    Candidates come from float32 blocks of |a|^2 + |b|^2 - 2ab over the upper triangle (a BLAS
    matrix product, in place), with a margin for float32 rounding; the few pairs within that
    margin of the threshold are re-measured in float64."""
    from scipy.sparse import coo_matrix

    n = len(x)
    x32 = np.ascontiguousarray(x, dtype=np.float32)
    sq = np.einsum("ij,ij->i", x32, x32)
    margin = 1e-3
    hi, lo = np.float32((radius + margin) ** 2), np.float32(max(radius - margin, 0.0) ** 2)
    rows, cols, unsure = [], [], []
    for s in range(0, n, block):
        e = min(n, s + block)
        d2 = x32[s:e] @ x32[s:].T
        d2 *= -2.0
        d2 += sq[None, s:]
        d2 += sq[s:e, None]
        i, j = np.nonzero(d2 < hi)
        keep = j > i  # upper triangle: block row i is face s + i, column j is face s + j
        i, j = i[keep], j[keep]
        rows.append(i + s)
        cols.append(j + s)
        unsure.append(d2[i, j] >= lo)
    r = np.concatenate(rows) if rows else np.zeros(0, np.int64)
    c = np.concatenate(cols) if cols else np.zeros(0, np.int64)
    check = np.flatnonzero(np.concatenate(unsure)) if unsure else np.zeros(0, np.int64)
    if len(check):
        d = np.sqrt(((x[r[check]] - x[c[check]]) ** 2).sum(axis=1))
        keep_all = np.ones(len(r), bool)
        keep_all[check[d >= radius]] = False
        r, c = r[keep_all], c[keep_all]
    ones = np.ones(2 * len(r), np.float32)
    return coo_matrix((ones, (np.concatenate([r, c]), np.concatenate([c, r]))), shape=(n, n)).tocsr()


def _linkage_labels(x: np.ndarray, method: str, threshold: float) -> np.ndarray:
    from scipy.cluster.hierarchy import fcluster, linkage
    from scipy.spatial.distance import pdist

    z = linkage(pdist(x), method=method)
    # fcluster keeps merges at heights <= t; persons are strictly below the threshold.
    return np.asarray(fcluster(z, t=np.nextafter(threshold, 0.0), criterion="distance"))


def _chinese_whispers(graph: Any, seed: int, max_iterations: int) -> np.ndarray:
    """Chinese whispers (Biemann 2006; dlib's face clustering) on an unweighted symmetric graph:
    each node in turn, in a seeded random order, takes the label most of its neighbours carry
    (ties: the smallest label), until a sweep changes nothing."""
    n = graph.shape[0]
    indptr, indices = graph.indptr.tolist(), graph.indices.tolist()
    neighbours = [indices[indptr[i] : indptr[i + 1]] for i in range(n)]
    labels = list(range(n))
    rng = np.random.default_rng(seed)
    for _ in range(max_iterations):
        changed = 0
        for i in rng.permutation(n).tolist():
            nb = neighbours[i]
            if not nb:
                continue
            counts: dict[int, int] = {}
            for j in nb:
                lab = labels[j]
                counts[lab] = counts.get(lab, 0) + 1
            top = max(counts.values())
            best = min(lab for lab, c in counts.items() if c == top)
            if best != labels[i]:
                labels[i] = best
                changed += 1
        if not changed:
            break
    return np.asarray(labels)


# ---------------------------------------------------------------------------------------------
# Persons and stable ids


@dataclass(frozen=True)
class PersonRecord:
    """A person as stored between runs: its id, user-given name (None until named), member
    face_ids (sorted) and centroid (mean embedding)."""

    person_id: str
    name: str | None
    face_ids: tuple[str, ...]
    centroid: tuple[float, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "person_id": self.person_id,
            "name": self.name,
            "face_ids": list(self.face_ids),
            "centroid": [round(v, 7) for v in self.centroid],
        }

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> PersonRecord:
        return cls(
            person_id=str(obj["person_id"]),
            name=obj.get("name"),
            face_ids=tuple(str(f) for f in obj.get("face_ids", ())),
            centroid=tuple(float(v) for v in obj.get("centroid", ())),
        )


def _record(person_id: str, name: str | None, face_ids: Iterable[str], clustering: Clustering) -> PersonRecord:
    ids = tuple(sorted(face_ids))
    return PersonRecord(person_id, name, ids, tuple(float(v) for v in clustering.centroid(ids)))


def new_person_id(seed: str, taken: Collection[str]) -> str:
    """ "p-" + 10 hex digits of sha1(seed), salted until it is not in `taken`."""
    k = 0
    while True:
        pid = "p-" + hashlib.sha1((seed if k == 0 else f"{seed}#{k}").encode()).hexdigest()[:10]
        if pid not in taken:
            return pid
        k += 1


def assign_ids(
    clustering: Clustering,
    previous: Sequence[PersonRecord] = (),
    decisions: Sequence[Decision] = (),
    params: PeopleParams | None = None,
    issued: Collection[str] = (),
) -> list[PersonRecord]:
    """Give each cluster a person id that is stable across runs (the raw layer, before decisions).

    1. A cluster holding faces of two or more previous persons that user decisions refer to is
       divided along their previous membership (other faces join the nearest part): the
       clustering never merges, say, two persons the user named differently.
    2. Clusters take the ids of previous persons by face overlap, greedily by Jaccard (persons
       that decisions refer to first: a named person's faces keep the name wherever they go),
    3. then the rest by centroid distance below the threshold (faces re-numbered by a re-analysis),
    4. the rest get new ids (`new_person_id` of their smallest face_id), never one in `issued`,
       in `previous` or named in `decisions`.
    A previous person's name stays with its id. Records come sorted by id."""
    params = params or PeopleParams()
    prev = sorted(previous, key=lambda p: p.person_id)
    protected = _referenced_ids(decisions)
    owner = {f: p.person_id for p in prev for f in p.face_ids}
    present = clustering.index

    groups: list[tuple[str, ...]] = []
    for c in clustering.clusters:
        owners = sorted({owner[f] for f in c if owner.get(f) in protected})
        if len(owners) < 2:
            groups.append(c)
            continue
        parts: dict[str, list[str]] = {q: [f for f in c if owner.get(f) == q] for q in owners}
        cents = np.stack([clustering.centroid(parts[q]) for q in owners])
        for f in c:
            if owner.get(f) not in parts:
                d = np.linalg.norm(cents - clustering.matrix[present[f]], axis=1)
                parts[owners[int(np.argmin(d))]].append(f)
        groups.extend(tuple(sorted(p)) for p in parts.values())

    prev_sizes = {p.person_id: sum(1 for f in p.face_ids if f in present) for p in prev}
    pairs = []
    for gi, g in enumerate(groups):
        for pid, n in Counter(owner[f] for f in g if f in owner).items():
            jac = n / (len(g) + prev_sizes[pid] - n)
            pairs.append((pid not in protected, -jac, -n, pid, g[0], gi))
    pairs.sort()
    match: dict[int, str] = {}
    used: set[str] = set()
    for *_, pid, _, gi in pairs:
        if gi not in match and pid not in used:
            match[gi] = pid
            used.add(pid)

    rest_g = [gi for gi in range(len(groups)) if gi not in match]
    # A forgotten person's id is never handed on to a look-alike (only its own faces find it).
    gone = {d.person_id for d in decisions if isinstance(d, ForgetPerson)}
    rest_p = [p for p in prev if p.person_id not in used | gone and len(p.centroid) == EMBEDDING_DIM]
    if rest_g and rest_p:
        from scipy.spatial.distance import cdist

        gc = np.stack([clustering.centroid(groups[gi]) for gi in rest_g])
        d = cdist(gc, np.asarray([p.centroid for p in rest_p], dtype=np.float64))
        gi_idx, pi_idx = np.nonzero(d < params.distance_threshold)
        cands = sorted(zip(d[gi_idx, pi_idx].tolist(), gi_idx.tolist(), pi_idx.tolist(), strict=True))
        for _, a, b in cands:
            gi, pid = rest_g[a], rest_p[b].person_id
            if gi not in match and pid not in used:
                match[gi] = pid
                used.add(pid)

    names = {p.person_id: p.name for p in prev}
    taken = set(issued) | {p.person_id for p in previous} | protected
    out = []
    for gi, g in enumerate(groups):
        pid = match.get(gi) or new_person_id(g[0], taken)
        taken.add(pid)
        out.append(_record(pid, names.get(pid), g, clustering))
    return sorted(out, key=lambda p: p.person_id)


# ---------------------------------------------------------------------------------------------
# User decisions (append-only log, JSON-serialisable)


@dataclass(frozen=True)
class Name:
    """Give a person a name (None or "" takes it away)."""

    person_id: str
    name: str | None


@dataclass(frozen=True)
class Merge:
    """Person b joins person a (a keeps its id; its name, or b's if a has none)."""

    a: str
    b: str


@dataclass(frozen=True)
class Split:
    """This face becomes its own person (id `split_person_id`) and is never put back into
    `person_id` by a re-clustering."""

    person_id: str
    face_id: str


@dataclass(frozen=True)
class NotThisPerson:
    """This face is not this person: it moves to the nearest other person within the threshold,
    else stays unassigned; never put back into `person_id` (nor into what it is merged into)."""

    person_id: str
    face_id: str


@dataclass(frozen=True)
class ForgetPerson:
    """Drop a person and exclude its faces from all future clustering. `face_ids` is the
    person's faces when the user asked (fill it with `forget_person`); when empty, the faces the
    person has at the first replay are used and kept in the state."""

    person_id: str
    face_ids: tuple[str, ...] = ()


@dataclass(frozen=True)
class ForgetMedia:
    """Drop every face of this media, now and in every future clustering."""

    media_key: str


Decision = Name | Merge | Split | NotThisPerson | ForgetPerson | ForgetMedia
_DECISION_TYPES: dict[str, type] = {
    c.__name__: c for c in (Name, Merge, Split, NotThisPerson, ForgetPerson, ForgetMedia)
}


def decision_to_json(d: Decision) -> dict[str, Any]:
    """`{"type": "Merge", "a": ..., "b": ...}`; tuples become lists."""
    return {"type": type(d).__name__, **{k: list(v) if isinstance(v, tuple) else v for k, v in asdict(d).items()}}


def decision_from_json(obj: Mapping[str, Any]) -> Decision:
    """The inverse of `decision_to_json`; unknown types raise ValueError, unknown keys are ignored."""
    cls = _DECISION_TYPES.get(str(obj.get("type")))
    if cls is None:
        raise ValueError(f"people: unknown decision type {obj.get('type')!r} ({' | '.join(_DECISION_TYPES)})")
    kwargs = {}
    for f in fields(cls):
        if f.name in obj:
            v = obj[f.name]
            kwargs[f.name] = tuple(v) if isinstance(v, list) else v
    return cls(**kwargs)


def split_person_id(person_id: str, face: str) -> str:
    """The id of the person a `Split(person_id, face)` creates: the same on every replay."""
    return "p-" + hashlib.sha1(f"split\0{person_id}\0{face}".encode()).hexdigest()[:10]


def _referenced_ids(decisions: Iterable[Decision]) -> set[str]:
    ids: set[str] = set()
    for d in decisions:
        if isinstance(d, Merge):
            ids.update((d.a, d.b))
        elif isinstance(d, Split):
            ids.update((d.person_id, split_person_id(d.person_id, d.face_id)))
        elif isinstance(d, Name | NotThisPerson | ForgetPerson):
            ids.add(d.person_id)
    return ids


@dataclass(frozen=True)
class Decided:
    """Persons after the decisions (sorted by id), unassigned faces with why (adds "rejected"),
    and every face forgotten by a `ForgetPerson` (to exclude from future clustering)."""

    persons: tuple[PersonRecord, ...]
    unassigned: Mapping[str, str]
    forgotten: frozenset[str]


def apply_decisions(
    records: Sequence[PersonRecord],
    decisions: Sequence[Decision],
    clustering: Clustering,
    params: PeopleParams | None = None,
) -> Decided:
    """Replay the decision log, in order, on freshly clustered persons (`assign_ids`' output).

    A decision that names a person that no longer exists (its faces all forgotten, say) does
    nothing; a merged-away id refers to the person it joined. Faces absent from `clustering`
    (forgotten, or their media gone) are ignored."""
    params = params or PeopleParams()
    members: dict[str, set[str]] = {r.person_id: set(r.face_ids) for r in records}
    names: dict[str, str | None] = {r.person_id: r.name for r in records}
    unassigned = dict(clustering.unassigned)
    alias: dict[str, str] = {}
    rejected: list[tuple[str, str]] = []
    forgotten: set[str] = set()
    present = clustering.index

    def resolve(pid: str) -> str:
        seen = set()
        while pid in alias and pid not in seen:
            seen.add(pid)
            pid = alias[pid]
        return pid

    def holder(face: str) -> str | None:
        return next((p for p, fs in members.items() if face in fs), None)

    def drop_face(face: str) -> None:
        p = holder(face)
        if p is not None:
            members[p].discard(face)
        unassigned.pop(face, None)

    for d in decisions:
        if isinstance(d, Name):
            p = resolve(d.person_id)
            if p in members:
                names[p] = (d.name or "").strip() or None
        elif isinstance(d, Merge):
            a, b = resolve(d.a), resolve(d.b)
            if a != b and a in members and b in members:
                members[a] |= members.pop(b)
                nb = names.pop(b, None)
                names[a] = names.get(a) or nb
                alias[b] = a
        elif isinstance(d, Split):
            if d.face_id in present and d.face_id not in forgotten:
                s = split_person_id(d.person_id, d.face_id)
                if holder(d.face_id) != s:
                    drop_face(d.face_id)
                    members.setdefault(s, set()).add(d.face_id)
                    names.setdefault(s, None)
        elif isinstance(d, NotThisPerson):
            p = resolve(d.person_id)
            rejected.append((d.person_id, d.face_id))
            if p in members and d.face_id in members[p]:
                members[p].discard(d.face_id)
                _rehome(
                    d.face_id,
                    members,
                    clustering,
                    params,
                    unassigned,
                    {resolve(q) for q, f in rejected if f == d.face_id},
                )
        elif isinstance(d, ForgetPerson):
            p = resolve(d.person_id)
            faces = set(d.face_ids) | members.pop(p, set())
            names.pop(p, None)
            for f in faces:
                drop_face(f)
            forgotten |= faces
        elif isinstance(d, ForgetMedia):
            prefix = d.media_key + "/"
            gone = {f for f, row in clustering.faces.items() if row.media == d.media_key or f.startswith(prefix)}
            for f in gone:
                drop_face(f)
        else:  # pragma: no cover - typing guards this
            raise ValueError(f"people: unknown decision {d!r}")

    # A later merge may have brought a rejected face back into the person it was rejected from.
    for pid, f in rejected:
        p = resolve(pid)
        if f in members.get(p, ()):
            members[p].discard(f)
            unassigned[f] = "rejected"

    persons = tuple(_record(p, names.get(p), fs, clustering) for p, fs in sorted(members.items()) if fs)
    return Decided(persons, unassigned, frozenset(forgotten))


def _rehome(
    face: str,
    members: dict[str, set[str]],
    clustering: Clustering,
    params: PeopleParams,
    unassigned: dict[str, str],
    not_these: set[str],
) -> None:
    """Put a rejected face into the nearest other person within the threshold, else unassigned."""
    cands = sorted(p for p, fs in members.items() if fs and p not in not_these)
    if cands:
        cents = np.stack([clustering.centroid(members[p]) for p in cands])
        d = np.linalg.norm(cents - clustering.matrix[clustering.index[face]], axis=1)
        best = int(np.argmin(d))
        if d[best] < params.distance_threshold:
            members[cands[best]].add(face)
            return
    unassigned[face] = "rejected"


# ---------------------------------------------------------------------------------------------
# State and the whole pipeline


@dataclass(frozen=True)
class PeopleState:
    """What a run hands to the next one (JSON via `to_json`/`from_json`): the raw clusters with
    their ids (before decisions), every id ever issued, and the forgotten faces (face_ids and
    embedding digests)."""

    clusters: tuple[PersonRecord, ...] = ()
    issued_ids: tuple[str, ...] = ()
    forgotten_face_ids: tuple[str, ...] = ()
    forgotten_digests: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "version": STATE_VERSION,
            "model_id": MODEL_ID,
            "clusters": [c.to_json() for c in self.clusters],
            "issued_ids": list(self.issued_ids),
            "forgotten_face_ids": list(self.forgotten_face_ids),
            "forgotten_digests": list(self.forgotten_digests),
        }

    @classmethod
    def from_json(cls, obj: Mapping[str, Any] | None) -> PeopleState:
        if not obj:
            return cls()
        if obj.get("version", STATE_VERSION) > STATE_VERSION:
            raise ValueError(f"people: state version {obj.get('version')} is newer than this code ({STATE_VERSION})")
        return cls(
            clusters=tuple(PersonRecord.from_json(c) for c in obj.get("clusters", ())),
            issued_ids=tuple(obj.get("issued_ids", ())),
            forgotten_face_ids=tuple(obj.get("forgotten_face_ids", ())),
            forgotten_digests=tuple(obj.get("forgotten_digests", ())),
        )


@dataclass(frozen=True)
class Person:
    """One person's dossier line. `media` in order of first appearance; first/last_seen are
    (media, t); `representatives` the best face_ids by score x size."""

    person_id: str
    name: str | None
    centroid: tuple[float, ...]
    count: int
    media: tuple[str, ...]
    first_seen: tuple[str, float]
    last_seen: tuple[str, float]
    representatives: tuple[str, ...]


@dataclass(frozen=True)
class Appearance:
    person_id: str
    face_id: str
    media: str
    t: float
    kf: int
    box: tuple[float, float, float, float]


@dataclass(frozen=True)
class CoAppearance:
    """Two persons (a < b) seen in the same keyframe / the same media, counted."""

    person_a: str
    person_b: str
    same_keyframe: int
    same_media: int


@dataclass(frozen=True)
class People:
    persons: tuple[Person, ...]
    appearances: tuple[Appearance, ...]
    co_appearances: tuple[CoAppearance, ...]
    unassigned: Mapping[str, str]  # face_id -> "small" | "low_score" | "small_cluster" | "rejected"
    records: tuple[PersonRecord, ...]  # the decided persons with all their face_ids
    state: PeopleState
    faces: Mapping[str, FaceRow] = field(repr=False, default_factory=dict)


def build_people(
    faces: Iterable[FaceRow | Mapping[str, Any]],
    state: PeopleState | None = None,
    decisions: Sequence[Decision] = (),
    params: PeopleParams | None = None,
    media_rank: Mapping[str, Any] | None = None,
) -> People:
    """Everything: exclude forgotten faces, cluster, assign stable ids, replay the decisions,
    summarise. `media_rank` orders media for first/last seen (e.g. ingest time; media missing
    from it come after, by key)."""
    params = params or PeopleParams()
    state = state or PeopleState()
    rows = [_face_row(f) for f in faces]
    digests = {f.face_id: embedding_digest(f.embedding) for f in rows}
    forgotten_ids = set(state.forgotten_face_ids)
    forgotten_digests = set(state.forgotten_digests)
    forgotten_media = set()
    for d in decisions:
        if isinstance(d, ForgetPerson):
            forgotten_ids.update(d.face_ids)
        elif isinstance(d, ForgetMedia):
            forgotten_media.add(d.media_key)

    def excluded() -> set[str]:
        return {
            f.face_id
            for f in rows
            if f.face_id in forgotten_ids or f.media in forgotten_media or digests[f.face_id] in forgotten_digests
        }

    exclude = excluded()
    for _ in range(2):
        clustering = cluster_faces(rows, params, exclude)
        raw = assign_ids(clustering, state.clusters, decisions, params, state.issued_ids)
        decided = apply_decisions(raw, decisions, clustering, params)
        # A ForgetPerson without a face list is resolved by the replay: cluster again without them.
        if decided.forgotten <= exclude:
            break
        forgotten_ids |= decided.forgotten
        exclude = excluded()
    forgotten_ids |= decided.forgotten
    forgotten_digests |= {digests[f] for f in forgotten_ids if f in digests}
    issued = set(state.issued_ids) | {p.person_id for p in raw} | {p.person_id for p in decided.persons}
    issued |= _referenced_ids(decisions)
    new_state = PeopleState(
        clusters=tuple(raw),
        issued_ids=tuple(sorted(issued)),
        forgotten_face_ids=tuple(sorted(forgotten_ids)),
        forgotten_digests=tuple(sorted(forgotten_digests)),
    )
    persons, appearances, co = summarise(decided.persons, clustering.faces, params, media_rank)
    return People(persons, appearances, co, decided.unassigned, decided.persons, new_state, clustering.faces)


def forget_person(people: People, person_id: str) -> ForgetPerson:
    """The `ForgetPerson` decision for a person shown in `people`, with its faces listed, so the
    log alone keeps them out of every future clustering."""
    rec = next((r for r in people.records if r.person_id == person_id), None)
    return ForgetPerson(person_id, rec.face_ids if rec else ())


def summarise(
    records: Sequence[PersonRecord],
    faces: Mapping[str, FaceRow],
    params: PeopleParams | None = None,
    media_rank: Mapping[str, Any] | None = None,
) -> tuple[tuple[Person, ...], tuple[Appearance, ...], tuple[CoAppearance, ...]]:
    """Dossier lines (most faces first), appearances (by person, then time) and co-appearances."""
    params = params or PeopleParams()
    rank = media_rank or {}

    def media_key(m: str) -> tuple[int, Any, str]:
        return (0, rank[m], m) if m in rank else (1, 0, m)

    def when(f: FaceRow) -> tuple[Any, ...]:
        return (*media_key(f.media), f.t, f.face_id)

    persons, appearances = [], []
    keyframes: dict[tuple[str, int], set[str]] = defaultdict(set)
    media_sets: dict[str, set[str]] = defaultdict(set)
    for r in records:
        rows = sorted((faces[f] for f in r.face_ids), key=when)
        media = tuple(dict.fromkeys(f.media for f in rows))
        best = sorted(rows, key=lambda f: (-f.score * f.size, f.face_id))[: params.representatives]
        persons.append(
            Person(
                person_id=r.person_id,
                name=r.name,
                centroid=r.centroid,
                count=len(rows),
                media=media,
                first_seen=(rows[0].media, rows[0].t),
                last_seen=(rows[-1].media, rows[-1].t),
                representatives=tuple(f.face_id for f in best),
            )
        )
        for f in rows:
            appearances.append(Appearance(r.person_id, f.face_id, f.media, f.t, f.kf, f.box))
            keyframes[(f.media, f.kf)].add(r.person_id)
            media_sets[f.media].add(r.person_id)
    same_kf: Counter[tuple[str, str]] = Counter()
    same_media: Counter[tuple[str, str]] = Counter()
    for counter, groups in ((same_kf, keyframes.values()), (same_media, media_sets.values())):
        for g in groups:
            ps = sorted(g)
            for i, a in enumerate(ps):
                for b in ps[i + 1 :]:
                    counter[(a, b)] += 1
    co = tuple(CoAppearance(a, b, same_kf[(a, b)], n) for (a, b), n in sorted(same_media.items()))
    persons.sort(key=lambda p: (-p.count, p.person_id))
    return tuple(persons), tuple(appearances), co


# ---------------------------------------------------------------------------------------------
# Tables


PERSONS_SCHEMA = pa.schema(
    [
        ("person_id", pa.string()),
        ("name", pa.string()),  # null until the user names the person
        ("count", pa.int32()),  # faces
        ("media", pa.list_(pa.string())),  # in order of first appearance
        ("first_seen", pa.struct([("media", pa.string()), ("t", pa.float64())])),
        ("last_seen", pa.struct([("media", pa.string()), ("t", pa.float64())])),
        ("representatives", pa.list_(pa.string())),  # face_ids, best score x size first
        ("centroid", pa.list_(pa.float32(), EMBEDDING_DIM)),  # mean embedding, dlib space
    ]
)

APPEARANCES_SCHEMA = pa.schema(
    [
        ("person_id", pa.string()),
        ("face_id", pa.string()),
        ("media", pa.string()),
        ("t", pa.float64()),
        ("kf", pa.int32()),
        ("box", pa.list_(pa.float32(), 4)),
    ]
)

CO_APPEARANCES_SCHEMA = pa.schema(
    [
        ("person_a", pa.string()),
        ("person_b", pa.string()),
        ("same_keyframe", pa.int32()),  # keyframes showing both
        ("same_media", pa.int32()),  # media showing both
    ]
)

UNASSIGNED_SCHEMA = pa.schema(
    [
        ("face_id", pa.string()),
        ("media", pa.string()),
        ("t", pa.float64()),
        ("kf", pa.int32()),
        ("reason", pa.string()),  # small | low_score | small_cluster | rejected
    ]
)


def persons_table(persons: Sequence[Person]) -> pa.Table:
    rows = [
        {
            **asdict(p),
            "media": list(p.media),
            "first_seen": {"media": p.first_seen[0], "t": p.first_seen[1]},
            "last_seen": {"media": p.last_seen[0], "t": p.last_seen[1]},
            "representatives": list(p.representatives),
            "centroid": list(p.centroid),
        }
        for p in persons
    ]
    return pa.Table.from_pylist(rows, schema=PERSONS_SCHEMA)


def appearances_table(appearances: Sequence[Appearance]) -> pa.Table:
    return pa.Table.from_pylist([{**asdict(a), "box": list(a.box)} for a in appearances], schema=APPEARANCES_SCHEMA)


def co_appearances_table(co_appearances: Sequence[CoAppearance]) -> pa.Table:
    return pa.Table.from_pylist([asdict(c) for c in co_appearances], schema=CO_APPEARANCES_SCHEMA)


def unassigned_table(unassigned: Mapping[str, str], faces: Mapping[str, FaceRow]) -> pa.Table:
    rows = [
        {"face_id": f, "media": faces[f].media, "t": faces[f].t, "kf": faces[f].kf, "reason": why}
        for f, why in sorted(unassigned.items())
        if f in faces
    ]
    return pa.Table.from_pylist(rows, schema=UNASSIGNED_SCHEMA)
