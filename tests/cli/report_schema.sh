# The --report / --json report of pare shrink and pare run validates against
# docs/report-schema.json (checked by the small JSON-Schema subset below: type, const, enum,
# required, properties, additionalProperties, items, $ref, minimum), when the gate passes,
# when it refuses, and under pare run; and the reference-result cache: the second run reads
# the reference from the cache (the report says so) and gives the same verdict, a corrupt or
# foreign entry is ignored, --no-cache neither reads nor writes.
. tests/clilib.sh
F=tests/fixtures
export XDG_CACHE_HOME=$T/cache
G="--text $F/eval.txt --ctx 64 --chunks 16"
check() { # REPORT: validates, or fails naming the first violation
python3 - docs/report-schema.json "$1" <<'PY' || fail "$1 does not follow docs/report-schema.json"
import json, sys
schema = json.load(open(sys.argv[1])); doc = json.load(open(sys.argv[2]))
TYPES = {"object": dict, "array": list, "string": str, "boolean": bool, "null": type(None)}
def is_type(v, t):
    if t == "number": return isinstance(v, (int, float)) and not isinstance(v, bool)
    if t == "integer": return isinstance(v, int) and not isinstance(v, bool)
    return isinstance(v, TYPES[t])
def check(s, v, where):
    for k in s:
        if k not in ("$schema", "$id", "title", "description", "$defs", "type", "const", "enum", "required",
                     "properties", "additionalProperties", "items", "$ref", "minimum"):
            raise SystemExit("schema uses '%s', which this checker does not know" % k)
    if "type" in s:
        ts = s["type"] if isinstance(s["type"], list) else [s["type"]]
        if not any(is_type(v, t) for t in ts): raise SystemExit("%s: %r is not %s" % (where, v, ts))
    if "const" in s and v != s["const"]: raise SystemExit("%s: %r is not %r" % (where, v, s["const"]))
    if "enum" in s and v not in s["enum"]: raise SystemExit("%s: %r not one of %r" % (where, v, s["enum"]))
    if "minimum" in s and is_type(v, "number") and v < s["minimum"]: raise SystemExit("%s: %r below minimum" % (where, v))
    if isinstance(v, dict):
        for r in s.get("required", []):
            if r not in v: raise SystemExit("%s: '%s' missing" % (where, r))
        props = s.get("properties", {})
        for k, x in v.items():
            if k in props: check(props[k], x, where + "." + k)
            elif s.get("additionalProperties", True) is False: raise SystemExit("%s: unexpected '%s'" % (where, k))
    if isinstance(v, list) and "items" in s:
        for i, x in enumerate(v): check(s["items"], x, "%s[%d]" % (where, i))
def resolve(s):
    if isinstance(s, dict):
        if "$ref" in s:
            t = schema
            for part in s["$ref"].lstrip("#/").split("/"): t = t[part]
            return resolve(t)
        return {k: (resolve(x) if k in ("items",) else {p: resolve(y) for p, y in x.items()} if k == "properties" else x)
                for k, x in s.items()}
    return s
check(resolve(schema), doc, "report")
PY
}
jget() { python3 -c "import json,sys
d=json.load(open(sys.argv[1]))
for k in sys.argv[2].split('.'): d=d[int(k)] if isinstance(d, list) else d[k]
print(d)" "$@"; }
mkdir -p $T/out
# passes: --report FILE and --json on stdout are the same document
expect_exit 0 $PARE shrink $F/tiny-llama $T/out/a.gguf --lora $F/tiny-llama-lora --type Q8_0 $G --report $T/a.json --json
check $T/a.json
cp $T/stdout $T/a-stdout.json
check $T/a-stdout.json
[ "$(jget $T/a.json reference.source)" = evaluated ] || fail "first run: reference $(jget $T/a.json reference.source)"
[ "$(jget $T/a.json size_after.file_bytes)" = "$(stat -c %s $T/out/a.gguf)" ] || fail "file size in the report"
[ "$(jget $T/a.json inputs.0.role)" = model ] && [ -n "$(jget $T/a.json inputs.0.digest)" ] || fail "model digest"
# the second run reads the reference from the cache, and comes to the same verdict
rm $T/out/a.gguf
expect_exit 0 $PARE shrink $F/tiny-llama $T/out/a.gguf --lora $F/tiny-llama-lora --type Q8_0 $G --report $T/b.json
check $T/b.json
[ "$(jget $T/b.json reference.source)" = cache ] || fail "second run: reference $(jget $T/b.json reference.source)"
[ "$(jget $T/b.json verdict)" = passed ] || fail "second run: $(jget $T/b.json verdict)"
[ "$(jget $T/b.json reference.ppl)" = "$(jget $T/a.json reference.ppl)" ] || fail "cached reference PPL differs"
[ "$(jget $T/b.json result.ppl)" = "$(jget $T/a.json result.ppl)" ] || fail "result PPL differs with the cache"
# a corrupt entry is ignored (and replaced), a foreign one too
entry=$(ls $T/cache/pare/ref-*.txt)
[ "$(echo "$entry" | wc -l)" -eq 1 ] || fail "cache entries: $entry"
sed -i 's/^ppl 0x1\.\(.\)/ppl 0x1.f/' "$entry"
rm $T/out/a.gguf
expect_exit 0 $PARE shrink $F/tiny-llama $T/out/a.gguf --lora $F/tiny-llama-lora --type Q8_0 $G --report $T/c.json
[ "$(jget $T/c.json reference.source)" = evaluated ] || fail "a corrupt cache entry was trusted"
[ "$(jget $T/c.json reference.ppl)" = "$(jget $T/a.json reference.ppl)" ] || fail "reference PPL after a corrupt entry"
echo "garbage" >"$entry"
rm $T/out/a.gguf
expect_exit 0 $PARE shrink $F/tiny-llama $T/out/a.gguf --lora $F/tiny-llama-lora --type Q8_0 $G --report $T/c.json
[ "$(jget $T/c.json reference.source)" = evaluated ] || fail "a garbage cache entry was trusted"
other=$T/cache/pare/ref-00000000000000000000000000000000.txt
sed 's/^key .*/key 00000000000000000000000000000000/' "$entry" >"$other.x"; mv "$other.x" "$entry"
rm $T/out/a.gguf
expect_exit 0 $PARE shrink $F/tiny-llama $T/out/a.gguf --lora $F/tiny-llama-lora --type Q8_0 $G --report $T/c.json
[ "$(jget $T/c.json reference.source)" = evaluated ] || fail "a foreign cache entry was trusted"
# --no-cache: evaluated, nothing written to the cache
rm -rf $T/cache $T/out/a.gguf
expect_exit 0 $PARE shrink $F/tiny-llama $T/out/a.gguf --type Q8_0 $G --no-cache --report $T/d.json
[ "$(jget $T/d.json reference.source)" = evaluated ] && [ ! -e $T/cache ] || fail "--no-cache used the cache"
# refused: the report says which limit failed and by how much; nothing written
expect_exit 3 $PARE shrink $F/tiny-llama $T/out/r.gguf --type Q4_0 $G --max-kld 0 --report $T/r.json
check $T/r.json
[ "$(jget $T/r.json verdict)" = refused ] && [ "$(jget $T/r.json failed.limit)" = max-kld ] || fail "refusal report"
[ "$(jget $T/r.json output.written)" = False ] && [ ! -e $T/out/r.gguf ] || fail "refused output written"
# pare run: the same schema, the recipe named
printf '{"input": "%s", "output": "%s", "type": "Q8_0", "text": "%s", "ctx": 64, "chunks": 16}\n' \
    "$PWD/$F/tiny-llama" "$T/out/run.gguf" "$PWD/$F/eval.txt" >$T/r1.json
expect_exit 0 $PARE run $T/r1.json --report $T/run.json
check $T/run.json
[ "$(jget $T/run.json command)" = run ] && [ "$(jget $T/run.json recipe)" = "$T/r1.json" ] || fail "run report"
echo ok
