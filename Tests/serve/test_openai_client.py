"""End-to-end test of `swift-lora-dist serve` with the official `openai` Python client.

    python3 Tests/serve/test_openai_client.py [--bin .build/release/swift-lora-dist] [--model MODEL.gguf]

Trains two tiny adapters (3 steps each) and a third on a copy of the base that claims another
fingerprint, starts `serve --port 0` with the first two, and checks completions, chat,
streaming, stop strings, /v1/models, loading and unloading, the error answers (404, 400, 409),
that greedy completions equal `generate --json`, /metrics, and that SIGTERM lets an
in-flight stream finish and exits 0. Needs `pip install openai`. Defaults: $SLD_BIN, $SLD_MODEL.
"""
import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

import openai

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
parser = argparse.ArgumentParser()
parser.add_argument("--bin", default=os.environ.get("SLD_BIN", os.path.join(ROOT, ".build/release/swift-lora-dist")))
parser.add_argument(
    "--model",
    default=os.environ.get(
        "SLD_MODEL", os.path.expanduser("~/.cache/swift-lora-dist/SmolLM2-135M-Instruct.Q4_1.gguf")))
args = parser.parse_args()
ENV = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
failures = []


def check(condition, what):
    print(("ok   " if condition else "FAIL ") + what, flush=True)
    if not condition:
        failures.append(what)


def sld(*arguments, timeout=300):
    result = subprocess.run([args.bin, *arguments], env=ENV, capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        raise RuntimeError(f"{arguments[0]} failed ({result.returncode}): {result.stderr[-2000:]}")
    return result.stdout


def train(model, data, output, seed):
    sld("train", "--model", model, "--data", data, "--output", output, "--steps", "3", "--batch-size", "4",
        "--micro-batch", "1", "--max-seq-len", "32", "--seed", str(seed), "--lr", "1e-2", "--threads", "2",
        "--json")


def http(method, url, body=None, raw=None):
    """(status, parsed JSON or text) of one request."""
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            status, text = response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        status, text = error.code, error.read().decode()
    try:
        return status, json.loads(text)
    except ValueError:
        return status, text


work = tempfile.mkdtemp(prefix="sld-serve-test.")
server = None
try:
    # Adapters: two on the base, one on a linked copy of it whose cached fingerprint is another.
    data = os.path.join(work, "data")
    subprocess.run([sys.executable, os.path.join(ROOT, "examples/make_arithmetic.py"), data, "--train", "40",
                    "--valid", "4"], check=True, capture_output=True)
    adapters_dir = os.path.join(work, "adapters")
    os.makedirs(adapters_dir)
    a1, a2 = os.path.join(adapters_dir, "a1"), os.path.join(adapters_dir, "a2")
    started = time.time()
    train(args.model, os.path.join(data, "train.jsonl"), a1, 1)
    train(args.model, os.path.join(data, "train.jsonl"), a2, 2)
    other = None
    cache = args.model + ".sld-fingerprint"
    try:
        other_dir = os.path.join(work, "other-base")
        os.makedirs(other_dir)
        linked = os.path.join(other_dir, os.path.basename(args.model))
        os.link(args.model, linked)  # same size and modification time: the cache key matches
        with open(cache) as f:
            cached = json.load(f)
        cached["fingerprint"] = "sha256:" + "0" * 64
        with open(linked + ".sld-fingerprint", "w") as f:
            json.dump(cached, f)
        other = os.path.join(work, "other")
        train(linked, os.path.join(data, "train.jsonl"), other, 3)
    except OSError as error:
        print(f"skip the wrong-base case: {error}")
        other = None
    print(f"trained adapters in {time.time() - started:.0f} s", flush=True)

    # The server, on any free port.
    log = open(os.path.join(work, "serve.err"), "w")
    server = subprocess.Popen(
        # Room in RAM for about one adapter (1.8 MB each): a1 is pinned, a2 is evicted when a3 loads.
        [args.bin, "serve", "--model", args.model, "--adapters-dir", adapters_dir, "--pin", "a1",
         "--adapter-cache-mb", "2", "--port", "0", "--served-model-name", "base", "--threads", "2"],
        env=ENV, stdout=subprocess.PIPE, stderr=log, text=True)
    port = None
    deadline = time.time() + 120
    while port is None and time.time() < deadline:
        line = server.stdout.readline()
        if not line:
            break
        if line.startswith("listening on http://127.0.0.1:"):
            port = int(line.rsplit(":", 1)[1])
    if port is None:
        log.flush()
        raise RuntimeError("serve did not print its port: " + open(log.name).read()[-2000:])
    base_url = f"http://127.0.0.1:{port}"
    client = openai.OpenAI(base_url=base_url + "/v1", api_key="unused", max_retries=0, timeout=120)

    status, health = http("GET", base_url + "/health")
    check(status == 200 and health == {"status": "ok"}, "GET /health")

    models = {m.id: m.model_dump() for m in client.models.list().data}
    check(set(models) == {"base", "a1", "a2"}, f"/v1/models lists base, a1, a2: {sorted(models)}")
    check(models["base"].get("parent") is None and models["a1"].get("parent") == "base",
          "adapters name the base as parent; the base has none")
    check(models["a1"].get("object") == "model" and models["a1"].get("owned_by"), "model entries have object, owned_by")
    check(models["a1"].get("adapter", {}).get("rank", 0) >= 1, "adapters carry their details")

    # Greedy completions equal `generate --json` for the same adapter and prompt.
    prompt = "What is 12 plus 30?"
    for name, folder in (("a1", a1), ("a2", a2)):
        expected = json.loads(sld("generate", "--model", args.model, "--adapter", folder, "--prompt", prompt,
                                  "--max-tokens", "8", "--json", "--threads", "1").strip().splitlines()[-1])
        got = client.completions.create(model=name, prompt=prompt, max_tokens=8, temperature=0)
        check(got.choices[0].text == expected["text"], f"greedy {name} equals generate: {got.choices[0].text!r} vs "
              f"{expected['text']!r}")
        check(got.model == name and got.object == "text_completion", f"{name}: the response names the adapter")
        check(got.usage.prompt_tokens == len(expected["promptIDs"])
              and got.usage.completion_tokens == len(expected["ids"])
              and got.usage.total_tokens == got.usage.prompt_tokens + got.usage.completion_tokens,
              f"{name}: usage counts the prompt and the generated tokens")

    # Streaming gives the same text as one answer.
    whole = client.completions.create(model="a1", prompt="Once upon a time", max_tokens=12, temperature=0)
    pieces, finish, chunks = [], None, 0
    for chunk in client.completions.create(model="a1", prompt="Once upon a time", max_tokens=12, temperature=0,
                                           stream=True):
        chunks += 1
        check(chunk.model == "a1", "stream chunks name the adapter") if chunks == 1 else None
        if chunk.choices:
            pieces.append(chunk.choices[0].text)
            finish = chunk.choices[0].finish_reason or finish
        if chunks > 100:
            break
    check("".join(pieces) == whole.choices[0].text, "streamed completion equals the whole answer")
    check(finish == whole.choices[0].finish_reason and finish in ("stop", "length"), f"stream finishes: {finish}")

    # A stop string ends the text before it.
    text = whole.choices[0].text
    if len(text.strip()) >= 4:
        stop = text.strip()[2:4]
        cut = client.completions.create(model="a1", prompt="Once upon a time", max_tokens=12, temperature=0,
                                        stop=[stop])
        check(cut.choices[0].text == text[:text.index(stop)] and cut.choices[0].finish_reason == "stop",
              f"stop {stop!r}: {cut.choices[0].text!r}")

    # Chat, whole and streamed.
    chat = client.chat.completions.create(model="a2", messages=[{"role": "user", "content": "Say hi."}],
                                          max_tokens=10, temperature=0)
    check(chat.object == "chat.completion" and chat.model == "a2" and chat.choices[0].message.role == "assistant",
          "chat completion")
    check("<|im_end|>" not in (chat.choices[0].message.content or ""), "chat text holds no <|im_end|>")
    deltas, roles, chunks = [], [], 0
    for chunk in client.chat.completions.create(model="a2", messages=[{"role": "user", "content": "Say hi."}],
                                                max_tokens=10, temperature=0, stream=True):
        chunks += 1
        if chunk.choices:
            deltas.append(chunk.choices[0].delta.content or "")
            roles.append(chunk.choices[0].delta.role)
        if chunks > 100:
            break
    check("".join(deltas) == chat.choices[0].message.content and roles[0] == "assistant",
          "streamed chat equals the whole answer")

    # vLLM's ignore_eos: the answer runs past the end of its turn to max_tokens (fixed-length load tests).
    short = client.chat.completions.create(model="a2", messages=[{"role": "user", "content": "Say hi."}],
                                           max_tokens=48, temperature=0)
    check(short.choices[0].finish_reason == "stop" and short.usage.completion_tokens < 48,
          f"the chat answer ends by itself: {short.usage.completion_tokens} tokens")
    long = client.chat.completions.create(model="a2", messages=[{"role": "user", "content": "Say hi."}],
                                          max_tokens=48, temperature=0, extra_body={"ignore_eos": True})
    check(long.choices[0].finish_reason == "length" and long.usage.completion_tokens == 48,
          f"ignore_eos runs to max_tokens: {long.usage.completion_tokens} tokens, {long.choices[0].finish_reason}")

    auto = client.completions.create(model="auto", prompt=prompt, max_tokens=4, temperature=0)
    check(auto.model in ("base", "a1", "a2"), f"auto is answered by {auto.model}")
    base = client.completions.create(model="base", prompt=prompt, max_tokens=4, temperature=0)
    check(base.model == "base", "the base by its name")

    # Errors.
    try:
        client.completions.create(model="missing", prompt="x", max_tokens=2)
        check(False, "unknown model is refused")
    except openai.NotFoundError as error:
        message = error.body.get("message", "") if isinstance(error.body, dict) else str(error)
        check(error.status_code == 404 and "missing" in message and "a1" in message,
              f"404 names the model and the loaded ones: {message}")
    status, body = http("POST", base_url + "/v1/completions", {"model": "a1", "prompt": "x", "max_tokens": "ten"})
    check(status == 400 and body["error"]["param"] == "max_tokens" and "max_tokens" in body["error"]["message"],
          f"400 names the field of the wrong type: {body}")
    status, body = http("POST", base_url + "/v1/chat/completions", raw=b'{"model": "a1", "messages": [')
    check(status == 400 and "JSON" in body["error"]["message"], "400 for malformed JSON")
    status, body = http("POST", base_url + "/v1/completions", {"model": "a1", "prompt": "x", "max_tokens": 1000000})
    check(status == 400 and "1000000" in body["error"]["message"] and "context" in body["error"]["message"],
          f"400 for a prompt that does not fit: {body}")
    # Found by fuzzing (serve-request): max_tokens near 2^63 overflowed the length check and
    # crashed the server; the server must answer 400 and go on serving.
    status, body = http("POST", base_url + "/v1/completions", {"model": "a1", "prompt": "x", "max_tokens": 2**63 - 1})
    check(status == 400 and "context" in body["error"]["message"], f"400 for max_tokens 2^63 - 1: {body}")
    try:
        client.completions.create(model="a1", prompt="x", max_tokens=2, temperature=5)
        check(False, "temperature 5 is refused")
    except openai.BadRequestError as error:
        check(error.status_code == 400 and "temperature" in str(error), "400 for temperature out of range")

    # Under load: concurrent greedy requests of different adapters (and the base) in shared
    # batches give the same text as each alone.
    cases = [(name, f"What is {3 * i + 1} plus {i + 5}?") for i, name in enumerate(["a1", "a2", "base", "a1", "a2", "base"])]
    alone = [client.completions.create(model=m, prompt=p, max_tokens=12, temperature=0).choices[0].text for m, p in cases]
    together = [None] * len(cases)

    def ask(i):
        m, p = cases[i]
        together[i] = client.completions.create(model=m, prompt=p, max_tokens=12, temperature=0).choices[0].text

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(len(cases))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    check(together == alone, f"concurrent greedy answers equal each alone: {together} vs {alone}")

    def metric(text, name):
        for line in text.splitlines():
            if line.startswith(name + " "):
                return float(line.split()[-1])
        return 0.0

    # A client that disconnects mid-stream: its sequence is freed (cancelled, no active sequence left).
    import http.client as httpclient
    _, before = http("GET", base_url + "/metrics")
    connection = httpclient.HTTPConnection("127.0.0.1", port, timeout=60)
    connection.request("POST", "/v1/completions", json.dumps(
        {"model": "a1", "prompt": "Once upon a time", "max_tokens": 2000, "temperature": 0, "stream": True}),
        {"Content-Type": "application/json"})
    response = connection.getresponse()
    first = response.read1(64) if hasattr(response, "read1") else response.read(64)
    connection.close()
    freed = False
    deadline = time.time() + 20
    while time.time() < deadline and not freed:
        time.sleep(0.2)
        _, now = http("GET", base_url + "/metrics")
        freed = (metric(now, 'sld_cancelled_requests_total{model="a1"}')
                 > metric(before, 'sld_cancelled_requests_total{model="a1"}')
                 and metric(now, "sld_active_sequences") == 0)
    check(bool(first) and freed, "a client that disconnects mid-stream has its sequence freed")

    # Loading and unloading.
    status, body = http("POST", base_url + "/v1/adapters", {"name": "a3", "path": a1})
    check(status == 201 and body.get("name") == "a3" and body.get("parent") == "base", f"POST /v1/adapters: {status}")
    status, body = http("POST", base_url + "/v1/adapters", {"name": "a3", "path": a1})
    check(status == 409, "loading a name twice is 409")
    status, body = http("POST", base_url + "/v1/adapters", {"name": "bad", "path": work + "/nothing"})
    check(status == 400, "a path that is no adapter is 400")
    check("a3" in {m.id for m in client.models.list().data}, "the loaded adapter is listed")
    again = client.completions.create(model="a3", prompt=prompt, max_tokens=8, temperature=0)
    check(again.choices[0].text == client.completions.create(model="a1", prompt=prompt, max_tokens=8,
                                                             temperature=0).choices[0].text,
          "the same adapter under another name answers the same")
    # Unloading while a stream uses the adapter: the stream finishes with the adapter it started with.
    expected = client.completions.create(model="a3", prompt="Once upon a time", max_tokens=24, temperature=0)
    streamed = {}

    def use_a3():
        pieces = []
        for chunk in client.completions.create(model="a3", prompt="Once upon a time", max_tokens=24, temperature=0,
                                               stream=True):
            if chunk.choices:
                pieces.append(chunk.choices[0].text)
                if len(pieces) == 1:
                    streamed["started"] = True
        streamed["text"] = "".join(pieces)

    user = threading.Thread(target=use_a3)
    user.start()
    deadline = time.time() + 60
    while "started" not in streamed and time.time() < deadline:
        time.sleep(0.01)
    status, body = http("DELETE", base_url + "/v1/adapters/a3")
    check(status == 200 and body.get("deleted") is True, "DELETE /v1/adapters/a3 while a stream uses it")
    user.join(timeout=120)
    check(streamed.get("text") == expected.choices[0].text,
          f"the stream using a3 finishes unchanged: {streamed.get('text')!r} vs {expected.choices[0].text!r}")
    status, body = http("POST", base_url + "/v1/completions", {"model": "a3", "prompt": "x", "max_tokens": 2})
    check(status == 404, "an unloaded adapter is 404")
    # a2 was evicted for a3 (a1 is pinned): it is read from disk again and answers as before.
    status, metrics = http("GET", base_url + "/metrics")
    evictions = metric(metrics, "sld_adapter_cache_evictions_total")
    reread = client.completions.create(model="a2", prompt=cases[1][1], max_tokens=12, temperature=0)
    status, metrics = http("GET", base_url + "/metrics")
    check(evictions >= 1 and metric(metrics, "sld_adapter_cache_misses_total") >= 1 and reread.choices[0].text == alone[1],
          f"an evicted adapter is read again and answers the same ({evictions:.0f} evictions)")
    pinned = {m.id: m.model_dump().get("adapter", {}) for m in client.models.list().data}
    check(pinned["a1"].get("pinned") is True and pinned["a1"].get("resident") is True, "the pinned adapter stays resident")
    status, body = http("DELETE", base_url + "/v1/adapters/a3")
    check(status == 404, "unloading twice is 404")
    if other:
        status, body = http("POST", base_url + "/v1/adapters", {"name": "other", "path": other})
        message = body["error"]["message"] if isinstance(body, dict) and "error" in body else str(body)
        check(status == 409 and "sha256:" + "0" * 64 in message and models["base"].get("fingerprint", "") in message,
              f"409 for an adapter of another base, with both fingerprints: {message}")

    status, metrics = http("GET", base_url + "/metrics")
    check(status == 200 and 'sld_requests_total{model="a1"}' in metrics and "sld_queue_depth" in metrics,
          "GET /metrics")

    # SIGTERM while a stream is in flight: it finishes, then the server exits 0.
    outcome = {}

    def stream():
        try:
            events = client.completions.create(model="a2", prompt="Once upon a time", max_tokens=16, temperature=0,
                                               stream=True)
            outcome["pieces"] = [c.choices[0].text for c in events if c.choices]
        except Exception as error:  # noqa: BLE001
            outcome["error"] = repr(error)

    thread = threading.Thread(target=stream)
    thread.start()
    time.sleep(0.3)
    server.send_signal(signal.SIGTERM)
    thread.join(timeout=120)
    check("error" not in outcome and len(outcome.get("pieces", [])) >= 2, f"the in-flight stream finishes: {outcome}")
    try:
        code = server.wait(timeout=60)
    except subprocess.TimeoutExpired:
        code = None
    check(code == 0, f"SIGTERM: serve exits 0 ({code})")
finally:
    if server is not None and server.poll() is None:
        server.kill()
        server.wait(timeout=30)
    shutil.rmtree(work, ignore_errors=True)

print(f"\n{len(failures)} failure(s)")
sys.exit(1 if failures else 0)
