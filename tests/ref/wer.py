#!/usr/bin/env python3
"""wer.py - word error rate: Levenshtein distance over normalized words (stdlib only).

Normalization (the same on both sides): lowercase; apostrophes dropped ("don't" -> "dont");
every other character that is not a letter or digit becomes a space; split on whitespace.
So "Americans, ask" == "americans ask" and "battle-field" is two words.
errors = substitutions + deletions + insertions of the minimal edit; WER = errors / len(ref words)
(0 when both are empty, errors when only the reference is empty).

Usage (the C side or a shell test calls it; any python3 will do):
  wer.py REF HYP                     texts as arguments
  wer.py --files REF_FILE HYP_FILE   texts in files (UTF-8; lines are joined)
  wer.py ... --max-errors N          exit 1 if errors > N (for shell tests)
Prints one line: "errors=E ref_words=N wer=R" (R with 4 decimals). Exit 0, 1 (over the
limit) or 2 (usage).
"""
import sys


def normalize(text):
    """Text -> list of normalized words (see the module comment)."""
    out = []
    for ch in text.lower():
        if ch in "'\u2019":
            continue
        out.append(ch if ch.isalnum() else " ")
    return "".join(out).split()


def edit_distance(ref, hyp):
    """Minimal substitutions + deletions + insertions turning list ref into list hyp."""
    prev = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        cur = [i] + [0] * len(hyp)
        for j, h in enumerate(hyp, 1):
            cur[j] = min(prev[j] + 1,              # deletion of r
                         cur[j - 1] + 1,           # insertion of h
                         prev[j - 1] + (r != h))   # match or substitution
        prev = cur
    return prev[-1]


def wer(ref_text, hyp_text):
    """(errors, ref_words, rate) of hyp_text against ref_text."""
    ref, hyp = normalize(ref_text), normalize(hyp_text)
    errors = edit_distance(ref, hyp)
    rate = errors / len(ref) if ref else float(errors)
    return errors, len(ref), rate


def main(argv):
    args = list(argv)
    max_errors = None
    if "--max-errors" in args:
        k = args.index("--max-errors")
        try:
            max_errors = int(args[k + 1])
        except (IndexError, ValueError):
            print("wer.py: --max-errors needs an integer", file=sys.stderr)
            return 2
        del args[k:k + 2]
    if len(args) == 3 and args[0] == "--files":
        try:
            texts = [open(p, encoding="utf-8").read().replace("\n", " ") for p in args[1:]]
        except OSError as e:
            print(f"wer.py: {e}", file=sys.stderr)
            return 2
    elif len(args) == 2 and not args[0].startswith("--"):
        texts = args
    else:
        print("usage: wer.py REF HYP | wer.py --files REF_FILE HYP_FILE  [--max-errors N]",
              file=sys.stderr)
        return 2
    errors, n, rate = wer(texts[0], texts[1])
    print(f"errors={errors} ref_words={n} wer={rate:.4f}")
    return 1 if max_errors is not None and errors > max_errors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
