#!/usr/bin/env bash
# prefix_batch.sh [THREADS] - the prefix-cache measurement of issue 3: a system
# prompt of ~1,000 tokens (the start of /usr/share/common-licenses/GPL-3, present on
# every Debian machine) shared by 20 short questions, run through `kvlm batch`
# with the prefix cache and without it (--no-prefix-cache), and each question alone
# through `kvlm run`. Prints time to first token cold vs warm, the hit rate, and
# whether all three sets of answers are identical. Greedy, 24 tokens per answer.
set -euo pipefail
cd "$(dirname "$0")/.."
t=${1:-2}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 - "$work/prompts.jsonl" <<'PY'
import json, sys
text = open("/usr/share/common-licenses/GPL-3").read()
system = "Answer questions about this license in one sentence.\n\n" + " ".join(text[:5000].split())
qs = ["What is this license called?", "Who wrote it?", "Can I sell copies?", "Is there a warranty?",
      "What does copyleft mean?", "Can I change the program?", "Must I share the source?",
      "What year is this version from?", "Can I use it for software?", "Who is the Free Software Foundation?",
      "Is the license free?", "Can I copy the license text?", "What is a covered work?",
      "What is the preamble about?", "Can patents restrict the program?", "What is a derived work?",
      "Who are the developers?", "Why is this license needed?", "Can I charge a fee?", "What freedom does it protect?"]
with open(sys.argv[1], "w") as f:
    for q in qs:
        f.write(json.dumps({"system": system, "prompt": q}) + "\n")
PY
opts="--temp 0 -n 24 -t $t"
build/kvlm batch -f "$work/prompts.jsonl" $opts > "$work/warm.jsonl" 2> "$work/warm.log"
build/kvlm batch -f "$work/prompts.jsonl" $opts --no-prefix-cache > "$work/cold.jsonl" 2> "$work/cold.log"
python3 - "$work" "$t" <<'PY'
import json, subprocess, sys, statistics
work, t = sys.argv[1], sys.argv[2]
warm = [json.loads(l) for l in open(f"{work}/warm.jsonl")]
cold = [json.loads(l) for l in open(f"{work}/cold.jsonl")]
prompts = [json.loads(l) for l in open(f"{work}/prompts.jsonl")]
alone = []
for p in prompts:
    out = subprocess.run(["build/kvlm", "run", "--system", p["system"], "-p", p["prompt"], "--temp", "0",
                          "-n", "24", "-t", t], capture_output=True, text=True, check=True).stdout
    alone.append(out[:-1] if out.endswith("\n") else out)
shared = min(w["prompt_tokens"] for w in warm)   # upper bound of the shared part
# the shared part exactly: common token prefix is not in the output; use the
# first prompt's cached count in the second run as the measured shared blocks
hits = [w["cached_tokens"] for w in warm[1:]]
print(f"prompts: {len(warm)}, prompt tokens {warm[0]['prompt_tokens']} (first), shared part <= {shared}")
print(f"cached tokens after the first: min {min(hits)}, mean {statistics.mean(hits):.0f} "
      f"({100*min(hits)/shared:.1f}% .. of the shortest prompt)")
print(f"time to first token: cold {cold[0]['ttft_ms']:.1f} ms (first, no cache), "
      f"median cold {statistics.median(c['ttft_ms'] for c in cold):.1f} ms, "
      f"median warm {statistics.median(w['ttft_ms'] for w in warm[1:]):.1f} ms")
same_cold = all(w["text"] == c["text"] for w, c in zip(warm, cold))
same_alone = all(w["text"] == a for w, a in zip(warm, alone))
print(f"answers identical: batch-with-cache == batch-without: {same_cold}; == run alone: {same_alone}")
sys.exit(0 if same_cold and same_alone else 1)
PY
echo "--- kvlm batch summary (with the prefix cache) ---"
cat "$work/warm.log"
