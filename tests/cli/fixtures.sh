# The committed fixtures are whole and agree with each other: safetensors headers, tensor
# names and shapes against config.json and the LoRA rank, the reference file's counts, the
# size budget, the two torch zip files (tests/fixtures/check_fixtures.py, Python stdlib only).
. tests/clilib.sh
command -v python3 >/dev/null 2>&1 || fail "python3 missing (make deps installs it)"
python3 tests/fixtures/check_fixtures.py || fail "tests/fixtures/check_fixtures.py failed"
echo ok
