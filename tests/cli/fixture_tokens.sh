# pare tokenize on tests/fixtures/tiny-llama gives sentencepiece's ids (stored by
# make_fixtures.py in tiny-llama-reference.json) for every test string, leading spaces and
# the empty string included, and for the whole of eval.txt.
. tests/clilib.sh
command -v python3 >/dev/null 2>&1 || fail "python3 missing (make deps installs it)"
PARE=$PARE python3 - <<'PY' || fail "tokens differ from the fixture's reference"
import json, os, subprocess, sys
pare, fx = os.environ["PARE"], "tests/fixtures/"
ref = json.load(open(fx + "tiny-llama-reference.json", encoding="utf-8"))
def ids(*args):
    r = subprocess.run([pare, "tokenize", fx + "tiny-llama", "--ids", *args], capture_output=True, text=True)
    return json.loads(r.stdout) if r.returncode == 0 else "exit %d: %s" % (r.returncode, r.stderr.strip())
bad = 0
for case in ref["tokenize"]:
    got = ids("--string", case["text"])
    if got != case["ids"]:
        bad += 1
        print("%r: got %s, want %s" % (case["text"], got, case["ids"]))
got = ids("--text", fx + "eval.txt")
if got != ref["eval_tokens"]:
    bad += 1
    n = next((i for i, (a, b) in enumerate(zip(got, ref["eval_tokens"])) if a != b), min(len(got), len(ref["eval_tokens"])))
    print("eval.txt: %d tokens, reference %d, first difference at %d" % (len(got), len(ref["eval_tokens"]), n))
print("%d of %d checks (%d strings, eval.txt of %d tokens) as sentencepiece" % (len(ref["tokenize"]) + 1 - bad, len(ref["tokenize"]) + 1, len(ref["tokenize"]), len(ref["eval_tokens"])))
sys.exit(1 if bad else 0)
PY
echo ok
