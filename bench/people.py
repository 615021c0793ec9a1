"""Person clustering at library scale: seconds to cluster N synthetic 128-d face embeddings.

Synthetic identities stand in for dlib embeddings with dlib-like distances: each identity is a
random centre (centre-to-centre ~0.8), each face the centre plus noise (same person ~0.4,
different ~0.9; some different-person pairs still fall below 0.6, as with real faces, so the
radius graph links some identities and the linkage must keep them apart). Prints the time of
`cluster_faces`, of the whole `build_people` from scratch and again with the previous state
(stable ids), and the clustering quality against the truth.

Usage: .venv/bin/python bench/people.py [--identities 500] [--faces-per-identity 40] [--algorithm average]
                                       [--spread 0.05]
"""

from __future__ import annotations

import argparse
import time
from collections import Counter

import numpy as np

from media_assets.analysis.people import PeopleParams, build_people, cluster_faces


def synthetic_faces(
    identities: int, per_identity: int, spread: float = 0.05, seed: int = 0
) -> tuple[list[dict], dict[str, int]]:
    """Face rows (one face per keyframe, 10 keyframes per media) and each face's true identity;
    `spread` is the per-dimension sd of the identity centres."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0.0, spread, (identities, 128))
    rows, truth = [], {}
    n = identities * per_identity
    who = np.repeat(np.arange(identities), per_identity)
    rng.shuffle(who)
    emb = centres[who] + rng.normal(0.0, 0.025, (n, 128))
    for i in range(n):
        media, kf = f"m{i // 10:05d}", i % 10
        fid = f"{media}/{kf}/0"
        rows.append(
            {
                "face_id": fid,
                "media": media,
                "t": kf * 2.0,
                "kf": kf,
                "box": (0.0, 0.0, 80.0, 80.0),
                "score": 0.9,
                "embedding": emb[i],
            }
        )
        truth[fid] = int(who[i])
    return rows, truth


def quality(clusters: list[tuple[str, ...]], truth: dict[str, int]) -> tuple[float, float, int]:
    """Purity (share of faces in their cluster's majority identity), completeness (share of faces
    in their identity's largest cluster) and the number of clusters."""
    pure = sum(Counter(truth[f] for f in c).most_common(1)[0][1] for c in clusters)
    by_id: dict[int, Counter[int]] = {}
    for ci, c in enumerate(clusters):
        for f in c:
            by_id.setdefault(truth[f], Counter())[ci] += 1
    complete = sum(c.most_common(1)[0][1] for c in by_id.values())
    n = len(truth)
    return pure / n, complete / n, len(clusters)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--identities", type=int, default=500)
    ap.add_argument("--faces-per-identity", type=int, default=40)
    ap.add_argument("--algorithm", default="average", choices=["average", "complete", "chinese_whispers"])
    ap.add_argument(
        "--spread",
        type=float,
        default=0.05,
        help="sd of identity centres per dimension: 0.05 links few identities, 0.04 links nearly all faces "
        "into one graph component (the large-library case: Chinese whispers first, then exact linkage)",
    )
    args = ap.parse_args()
    rows, truth = synthetic_faces(args.identities, args.faces_per_identity, args.spread)
    params = PeopleParams(algorithm=args.algorithm)

    t0 = time.perf_counter()
    clustering = cluster_faces(rows, params)
    t_cluster = time.perf_counter() - t0
    purity, completeness, k = quality(list(clustering.clusters), truth)

    t0 = time.perf_counter()
    people = build_people(rows, params=params)
    t_build = time.perf_counter() - t0
    t0 = time.perf_counter()
    again = build_people(rows, state=people.state, params=params)
    t_again = time.perf_counter() - t0
    stable = [p.person_id for p in people.persons] == [p.person_id for p in again.persons]

    print(f"faces: {len(rows)}, identities: {args.identities}, spread: {args.spread}, algorithm: {args.algorithm}")
    print(f"cluster_faces: {t_cluster:.2f} s")
    print(f"build_people from scratch: {t_build:.2f} s; with previous state: {t_again:.2f} s (ids stable: {stable})")
    print(f"clusters: {k}, purity: {purity:.4f}, completeness: {completeness:.4f}")


if __name__ == "__main__":
    main()
