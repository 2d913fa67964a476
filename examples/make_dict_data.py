#!/usr/bin/env python3
"""Turns three Debian packages into JSON Lines training data for the multi-adapter demo.

    python3 examples/make_dict_data.py OUT_FOLDER [--valid-fraction 0.1] [--max-valid 100]
                                                  [--freedict-words 2000] [--seed 0]

Writes, each with a train and a validation file (a deterministic split):

  OUT_FOLDER/devil/{train,valid}.jsonl     prompt/completion: Ambrose Bierce's definitions
                                           (dict-devil, /usr/share/dictd/devil.*)
  OUT_FOLDER/freedict/{train,valid}.jsonl  prompt/completion: English word -> German word, one
                                           answer per prompt, for --exact-match evaluation
                                           (dict-freedict-eng-deu, /usr/share/dictd/freedict-eng-deu.*)
  OUT_FOLDER/fortunes/{train,valid}.jsonl  text: short fortune cookies
                                           (fortunes-min, /usr/share/games/fortunes/)

Install the packages with `apt-get install dict-devil dict-freedict-eng-deu fortunes-min`
(`launch/setup` does). Standard library only. docs/demo-data.md describes the data.
"""
import argparse
import collections
import gzip
import json
import os
import random
import re
import sys

APT = "apt-get install -y dict-devil dict-freedict-eng-deu fortunes-min"

# dictd's index stores offsets and lengths as big-endian base-64 numbers in this alphabet.
B64 = {c: i for i, c in enumerate("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")}


def b64number(text):
    n = 0
    for c in text:
        n = n * 64 + B64[c]
    return n


def dictd_entries(index_path, dict_path):
    """(headword, entry text) for every index line, in index order; entries sharing an offset
    (one definition under two headwords) come once, under their first headword."""
    with gzip.open(dict_path) as f:  # .dict.dz is gzip with extra random-access data
        data = f.read()
    seen = set()
    with open(index_path, encoding="utf-8") as f:
        for line in f:
            parts = line.rstrip("\n").split("\t")
            if len(parts) != 3 or parts[0].startswith("00database") or parts[0].startswith("00-database"):
                continue
            try:
                offset, length = b64number(parts[1]), b64number(parts[2])
            except KeyError:
                continue
            if (offset, length) in seen:
                continue
            seen.add((offset, length))
            yield parts[0], data[offset:offset + length].decode("utf-8", "replace")


# ---------------------------------------------------------------------------------------
# The Devil's Dictionary

POS = r"[a-z]{1,5}\.(?:\s*[a-z]{1,5}\.)*(?:\s+(?:and|or|&)\s+[a-z]{1,5}\.(?:\s*[a-z]{1,5}\.)*)?"
HEAD_POS = re.compile(r"^([A-Z].*?)[ ,]\s*(" + POS + r")(?=\s|$)\s*(.*)$")


def join_wrapped(lines):
    """Joins wrapped lines; a line that ends a sentence gets the text's two-space separator,
    a word hyphenated at the line's end ("cannon-" "shot") none."""
    out = ""
    for line in lines:
        line = line.strip()
        if not out:
            out = line
        elif re.search(r"[.!?][\"')\]]?$", out):
            out += "  " + line
        elif re.search(r"[A-Za-z]-$", out):
            out += line
        else:
            out += " " + line
    return out


def clean_markup(text):
    text = text.replace("{", "").replace("}", "").replace("_", "")
    return text


def shorten(definition, limit=200):
    """Whole sentences (Bierce separates them with two spaces) while they fit in `limit`
    characters; at least the first sentence, or None when that alone is far too long or only
    introduces a quotation."""
    sentences = [s for s in re.split(r"(?<=[.!?\"')\]])\s{2,}", definition) if s.strip()]
    if not sentences:
        return None
    if sentences[0].rstrip().endswith(":"):
        return None
    out = sentences[0]
    for s in sentences[1:]:
        if len(out) + 1 + len(s) > limit or s.rstrip().endswith(":"):  # "Following is an example:"
            break
        out += " " + s
    if len(out) > 1.5 * limit:
        return None
    return re.sub(r"\s+", " ", out).strip()


def devil_examples(dictd):
    examples, seen = [], set()
    for _, entry in dictd_entries(os.path.join(dictd, "devil.index"), os.path.join(dictd, "devil.dict.dz")):
        paragraph = entry.strip().split("\n\n")[0]
        lines = paragraph.split("\n")
        first = lines[0].strip()
        # Letters of the alphabet: "I is the first letter of ..." (the whole paragraph defines I).
        m = re.match(r"^([A-Z])(?: \(double U\))?[ ,]", first)
        if m and not re.match(r"^[A-Z][A-Z]", first):
            head, definition = m.group(1), join_wrapped(lines)
        else:
            m = HEAD_POS.match(first)  # "ABASEMENT, n.  A decent", "BRAIN, n. An apparatus"
            if m:
                head, rest = m.group(1), m.group(3)
            elif "  " in first:  # "CUI BONO?  [Latin]  What good", "LL.D.  Letters"
                head, rest = first.split("  ", 1)
            else:
                head, rest = first, ""
            definition = join_wrapped([rest] + lines[1:])
            head = head.strip().rstrip(",").strip()
            if head.endswith(".") and not re.search(r"\.[A-Z]\.$", head):
                head = head[:-1]  # "HABEAS CORPUS." but not "LL.D."
        # Leading labels: "[Latin]", "[from {ACADEME}]".
        definition = clean_markup(definition).strip()
        while definition.startswith("["):
            end = definition.find("]")
            if end < 0:
                break
            definition = definition[end + 1:].strip()
        head = clean_markup(head)
        if not head or not re.match(r"^[A-Z]", head) or not definition:
            continue  # verse-only entries ("ALLEGIANCE, n." then a poem)
        if re.match(r"^(\(\s*)?see\b", definition, re.I) and len(definition) < 60:
            continue  # cross-references only: "BRUTE, n.  See HUSBAND."
        completion = shorten(definition)
        if not completion or len(completion) < 8:
            continue
        prompt = f"Define, as Ambrose Bierce would: {head}"
        if prompt in seen:
            continue  # PRECEDENT is there twice; of REASON n. and v.i. the first
        seen.add(prompt)
        examples.append({"prompt": prompt, "completion": " " + completion})
    return examples


# ---------------------------------------------------------------------------------------
# FreeDict English -> German

# Grammar tags a clean translation may carry: nouns, plurals, adjectives, adverbs, verbs.
GOOD_TAGS = {"masc", "fem", "neut", "pl", "adj", "adv", "adj, adv", "v", "v, intr", "v, trans", "v, refl"}
GERMAN_WORD = re.compile(r"^[A-Za-zÄÖÜäöüß]+(-[A-Za-zÄÖÜäöüß]+)?$")


def strip_annotations(text):
    """'sich (mit jdm.) unterhalten <v, refl> [ugs.]' -> 'sich unterhalten'."""
    previous = None
    while previous != text:  # nested brackets: "in ([wohin?+ acc])"
        previous = text
        text = re.sub(r"<[^<>]*>|\[[^\[\]]*\]|\([^()]*\)|\{[^{}]*\}|/[^/]*/", " ", text)
    return re.sub(r"\s+", " ", text).strip()


def first_translation(line):
    """The first translation on an entry's second line without its annotations, and whether it
    is a clean word: ' [Am.] Auto <neut> [geh.], Wagen <masc>' -> ('Auto', True); past
    participles ('gelaufen'), articles and pronouns ('der <art>') and phrases are not clean."""
    text = strip_annotations(line)
    word = text.split(",")[0].strip()
    tag = re.search(r"<([^<>]*)>", line)  # the list's part of speech: "gewinnen, siegen <v, intr>"
    clean = bool(tag) and tag.group(1) in GOOD_TAGS and bool(GERMAN_WORD.match(word)) and len(word) >= 2
    return word, clean


def freedict_examples(dictd, count, margin=1.5, min_support=2):
    index = os.path.join(dictd, "freedict-eng-deu.index")
    english = collections.Counter()   # how often a word occurs in headwords: a frequency proxy
    senses = collections.defaultdict(dict)  # headword -> {first translation: [examples, clean]}
    phrases = []  # (words of a longer headword, its translations in lower case)
    for headword, entry in dictd_entries(index, os.path.join(dictd, "freedict-eng-deu.dict.dz")):
        tokens = re.findall(r"[a-z]+", headword)
        english.update(tokens)
        lines = entry.split("\n", 2)
        if len(lines) < 2:
            continue
        if len(tokens) > 1:
            phrases.append((tokens, lines[1].lower()))
            continue
        if not (3 <= len(headword) <= 10 and headword.isalpha() and headword.isascii() and headword.islower()):
            continue
        if not re.match(re.escape(headword) + r" /[^/]*/( <[^>]*>)?( \(.*\))?( <[^>]*>)?$", lines[0].strip()):
            continue  # abbreviations ("computed axial tomography (CAT)") and other headword forms
        word, clean = first_translation(lines[1])
        sense = senses[headword].setdefault(word, [0, False])
        sense[0] += entry.count('\n      "')  # example sentences
        sense[1] = sense[1] or clean
    # Each headword's main sense is the translation that its phrases use most: "line" is
    # "Linie" because "straight line" is "gerade Linie" and "line of sight" "Sichtlinie"; then
    # the one with the most examples. Words whose main sense is no clean single word ("come":
    # "gekommen"), too rare or not clearly ahead are left out; of the rest, the commonest.
    pool = sorted((w for w, o in senses.items() if any(c for _, c in o.values())),
                  key=lambda w: (-english[w], w))[:3 * count]
    support = {w: collections.Counter() for w in pool}
    options = {w: [(t, t.lower()) for t in senses[w] if len(t) >= 3] for w in pool}
    for tokens, german in phrases:
        for token in set(tokens):
            if token in support:
                for t, lower in options[token]:
                    if lower in german:
                        support[token][t] += 1
    chosen = {}
    for w in pool:
        scored = sorted((support[w][t], ex, t, clean) for t, (ex, clean) in senses[w].items())
        n, _, best, clean = scored[-1]
        if clean and n >= min_support and (len(scored) == 1 or n >= margin * scored[-2][0]):
            chosen[w] = best
    words = sorted(chosen, key=lambda w: (-english[w], w))[:count]
    return [{"prompt": f"English: {w}\nGerman:", "completion": " " + chosen[w]} for w in words]


# ---------------------------------------------------------------------------------------
# Fortune cookies

def fortune_examples(folder, limit):
    examples, seen = [], set()
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name)
        if name.endswith(".dat") or name.endswith(".u8") or os.path.islink(path) or not os.path.isfile(path):
            continue
        with open(path, encoding="utf-8", errors="replace") as f:
            text = f.read()
        for cookie in re.split(r"^%\s*$", text, flags=re.M):
            cookie = re.sub(r".\x08", "", cookie)  # overstriking ("_\bU" underlines)
            lines = [l.replace("\t", "    ").rstrip() for l in cookie.split("\n")]
            cookie = "\n".join(lines).strip("\n")
            if not cookie.strip() or len(cookie) > limit or re.search(r"[\x00-\x08\x0b-\x1f]", cookie):
                continue
            if cookie in seen:
                continue
            seen.add(cookie)
            examples.append({"text": cookie})
    return examples


# ---------------------------------------------------------------------------------------

def split(examples, fraction, max_valid, seed):
    order = list(examples)
    random.Random(seed).shuffle(order)
    n_valid = min(max_valid, max(1, round(len(order) * fraction)))
    return order[n_valid:], order[:n_valid]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out")
    parser.add_argument("--valid-fraction", type=float, default=0.1)
    parser.add_argument("--max-valid", type=int, default=100)
    parser.add_argument("--freedict-words", type=int, default=2000, help="the commonest N headwords")
    parser.add_argument("--max-fortune-chars", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dictd-dir", default="/usr/share/dictd")
    parser.add_argument("--fortunes-dir", default="/usr/share/games/fortunes")
    args = parser.parse_args()

    needed = [
        ("dict-devil", os.path.join(args.dictd_dir, "devil.index")),
        ("dict-devil", os.path.join(args.dictd_dir, "devil.dict.dz")),
        ("dict-freedict-eng-deu", os.path.join(args.dictd_dir, "freedict-eng-deu.index")),
        ("dict-freedict-eng-deu", os.path.join(args.dictd_dir, "freedict-eng-deu.dict.dz")),
        ("fortunes-min", os.path.join(args.fortunes_dir, "fortunes")),
    ]
    missing = {}
    for package, path in needed:
        if not os.path.isfile(path):
            missing.setdefault(package, path)
    if missing:
        for package, path in missing.items():
            print(f"error: the Debian package {package} is not installed ({path} is missing): "
                  f"run 'apt-get install -y {package}' as root (or ./launch/setup)", file=sys.stderr)
        sys.exit(1)

    datasets = [
        ("devil", devil_examples(args.dictd_dir)),
        ("freedict", freedict_examples(args.dictd_dir, args.freedict_words)),
        ("fortunes", fortune_examples(args.fortunes_dir, args.max_fortune_chars)),
    ]
    for name, examples in datasets:
        if not examples:
            print(f"error: no {name} examples found; are the package files complete? ({APT})", file=sys.stderr)
            sys.exit(1)
        train, valid = split(examples, args.valid_fraction, args.max_valid, args.seed)
        folder = os.path.join(args.out, name)
        os.makedirs(folder, exist_ok=True)
        for part, rows in (("train", train), ("valid", valid)):
            with open(os.path.join(folder, f"{part}.jsonl"), "w", encoding="utf-8") as f:
                for row in rows:
                    f.write(json.dumps(row, ensure_ascii=False) + "\n")
        print(f"{name}: {len(train)} training and {len(valid)} validation examples in {folder}")


if __name__ == "__main__":
    main()
