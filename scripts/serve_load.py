#!/usr/bin/env python3
"""A bounded load on `swift-lora-dist serve` from a second process, with the official openai
client: N concurrent streams over the adapters, each sending R completions of M tokens.

It starts the server itself on 127.0.0.1 with --port 0, once per schedule (mixed: every
adapter's sequences in one batch; one-adapter: only one model's requests share the batch, as
llama.cpp's server does with different LoRA settings), rounds alternating, and prints
requests/s, generated tokens/s, p50/p99 latency and time to first token, and the ratio of
generated tokens/s of mixed over one-adapter. Each completion runs to --max-tokens (vLLM's
`ignore_eos`), so both schedules generate the same number of tokens. Every loop is bounded in count and time; the
server is stopped with SIGTERM (and killed if it does not exit).

  python3 scripts/serve_load.py --binary .build/release/swift-lora-dist --model MODEL.gguf \
      --adapter devil=out/devil --adapter arith=out/arith ... [--streams 16] [--requests 2] \
      [--max-tokens 64] [--rounds 2] [--json out.json]
"""
import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import threading
import time

PROMPTS = [
    "Define, as Ambrose Bierce would: {w}",
    "English: {w}\nGerman:",
    "Write a fortune cookie about {w}.",
    "What is {n} plus {m}?",
]
WORDS = ["lawyer", "house", "friend", "money", "river", "politics", "bread", "night", "garden", "music"]


def start_server(args, schedule):
    command = [args.binary, "serve", "--model", args.model, "--port", "0", "--max-batch", str(args.streams),
               "--schedule", schedule]
    for a in args.adapter:
        command += ["--adapter", a]
    if args.threads:
        command += ["--threads", str(args.threads)]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 120
    while time.time() < deadline:
        line = server.stdout.readline()
        if not line:
            break
        if "listening on " in line:
            url = line.split("listening on ", 1)[1].strip()
            threading.Thread(target=lambda: [None for _ in server.stdout], daemon=True).start()
            return server, url
    server.kill()
    raise SystemExit("the server did not start within 120 s")


def stop_server(server):
    server.send_signal(signal.SIGTERM)
    try:
        return server.wait(timeout=60)
    except subprocess.TimeoutExpired:
        server.kill()
        return None


def percentile(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))] if values else float("nan")


def run_load(url, args, names):
    from openai import OpenAI
    client = OpenAI(base_url=url + "/v1", api_key="none", timeout=args.timeout, max_retries=0)
    results, errors = [], []
    lock = threading.Lock()
    deadline = time.time() + args.timeout

    def stream(i):
        for r in range(args.requests):
            if time.time() > deadline:
                return
            k = (i + r) % len(names)
            prompt = PROMPTS[k % len(PROMPTS)].format(w=WORDS[(i * 3 + r) % len(WORDS)], n=i + 3, m=r + 7)
            started = time.time()
            first, tokens = None, 0
            try:
                chunks = client.completions.create(model=names[k], prompt=prompt, max_tokens=args.max_tokens,
                                                   temperature=0, stream=True,
                                                   stream_options={"include_usage": True},
                                                   extra_body={} if args.stop_at_eos else {"ignore_eos": True})
                for chunk in chunks:
                    if chunk.choices and chunk.choices[0].text and first is None:
                        first = time.time() - started
                    if getattr(chunk, "usage", None):
                        tokens = chunk.usage.completion_tokens
            except Exception as error:  # noqa: BLE001 - reported below
                with lock:
                    errors.append(f"{names[k]}: {error}")
                continue
            with lock:
                results.append({"latency": time.time() - started, "ttft": first or float("nan"), "tokens": tokens})

    began = time.time()
    threads = [threading.Thread(target=stream, args=(i,)) for i in range(args.streams)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=args.timeout + 10)
    wall = time.time() - began
    tokens = sum(r["tokens"] for r in results)
    return {
        "requests": len(results), "errors": errors, "seconds": wall, "requests_per_second": len(results) / wall,
        "tokens": tokens, "tokens_per_second": tokens / wall,
        "latency_p50": percentile([r["latency"] for r in results], 0.5),
        "latency_p99": percentile([r["latency"] for r in results], 0.99),
        "ttft_p50": percentile([r["ttft"] for r in results], 0.5),
        "ttft_p99": percentile([r["ttft"] for r in results], 0.99),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--binary", required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--adapter", action="append", required=True, help="NAME=PATH (repeat)")
    parser.add_argument("--streams", type=int, default=16)
    parser.add_argument("--requests", type=int, default=2, help="completions per stream")
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--stop-at-eos", action="store_true",
                        help="let answers end at the end-of-text token (default: ignore_eos, max-tokens each)")
    parser.add_argument("--threads", type=int)
    parser.add_argument("--timeout", type=float, default=900, help="seconds one load may take")
    parser.add_argument("--json", help="write every round's figures here")
    args = parser.parse_args()
    names = [a.split("=", 1)[0] for a in args.adapter]
    rounds = []
    for r in range(args.rounds):
        for schedule in ("mixed", "one-adapter") if r % 2 == 0 else ("one-adapter", "mixed"):
            server, url = start_server(args, schedule)
            try:
                figures = run_load(url, args, names)
            finally:
                status = stop_server(server)
            figures.update(schedule=schedule, round=r, exit_status=status)
            rounds.append(figures)
            print(f"round {r} {schedule:11s}: {figures['requests']} requests in {figures['seconds']:.1f} s, "
                  f"{figures['tokens_per_second']:.1f} generated tokens/s, {figures['requests_per_second']:.2f} req/s, "
                  f"latency p50 {figures['latency_p50']:.2f} s p99 {figures['latency_p99']:.2f} s, "
                  f"TTFT p50 {figures['ttft_p50']:.2f} s p99 {figures['ttft_p99']:.2f} s, exit {status}"
                  + (f", {len(figures['errors'])} errors: {figures['errors'][:2]}" if figures["errors"] else ""),
                  flush=True)
    mixed = [f["tokens_per_second"] for f in rounds if f["schedule"] == "mixed"]
    single = [f["tokens_per_second"] for f in rounds if f["schedule"] == "one-adapter"]
    ratio = statistics.mean(mixed) / statistics.mean(single)
    print(f"mixed / one-adapter generated tokens/s: {ratio:.2f}x "
          f"({', '.join(f'{m / s:.2f}' for m, s in zip(mixed, single))} per round)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"rounds": rounds, "ratio": ratio, "cpu": os.uname().machine}, f, indent=1)
    if any(f["errors"] for f in rounds) or any(f["exit_status"] != 0 for f in rounds):
        sys.exit(1)


if __name__ == "__main__":
    main()
