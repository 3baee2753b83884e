#!/usr/bin/env python3
"""Verifies a peng usage ledger signed with Ed25519, independently of peng: only the Python
standard library and the `openssl` command line (OpenSSL 3) are used. docs/VERIFYING.md
walks through what it checks; accounting/ledger.h is the record format.

  verify_ledger.py LEDGER.jsonl --public-key PUB.pem [--head HEX --records N]

For each line, in order:
  1. it ends with '\\n' and is a JSON object whose keys are sorted, none twice;
  2. "seq" is the line's index and "prev" the SHA-256 of the previous line's bytes (64 zeros
     for the first): nothing deleted, inserted or reordered;
  3. "key_id" is the public key's id (the first 16 hex digits of the SHA-256 of its raw
     32 bytes) and "sig" an Ed25519 signature, under that key, of the line with its
     ',"sig":"..."' member cut out (the canonical form the signature covers);
With --head/--records (from a certificate, or a copy kept elsewhere): the line `--records`
of the ledger hashes to --head, so records cut off at the tail are detected.
Prints "ok: N records, head H" and exits 0, or "error: record I (line I+1): what" and exits 1.
"""
import argparse, base64, hashlib, json, os, re, subprocess, sys, tempfile

SIG = re.compile(r',"sig":"([0-9a-f]{128})"')


def key_id(pub_pem):
    with open(pub_pem) as f:
        body = "".join(l.strip() for l in f if not l.startswith("-----"))
    der = base64.b64decode(body)
    if len(der) != 44:  # SubjectPublicKeyInfo of an Ed25519 key: 12 bytes of header + 32
        sys.exit(f"error: {pub_pem} is not an Ed25519 public key")
    return hashlib.sha256(der[-32:]).hexdigest()[:16]


def openssl_verifies(pub_pem, message, signature, tmp):
    msg, sig = os.path.join(tmp, "msg"), os.path.join(tmp, "sig")
    with open(msg, "wb") as f:
        f.write(message)
    with open(sig, "wb") as f:
        f.write(signature)
    r = subprocess.run(["openssl", "pkeyutl", "-verify", "-pubin", "-inkey", pub_pem, "-rawin",
                        "-in", msg, "-sigfile", sig], capture_output=True, text=True)
    return r.returncode == 0 and "Signature Verified Successfully" in r.stdout


class Bad(Exception):
    """A ledger that does not verify: str() is the error line's text."""


def _sorted_object(pairs):
    keys = [k for k, _ in pairs]
    if len(set(keys)) != len(keys):
        raise Bad(f"a key appears twice in one object ({keys})")
    if keys != sorted(keys):
        raise Bad("the keys of an object are not sorted (not the canonical form)")
    return dict(pairs)


def parse_canonical(text):
    """The JSON value of `text`, whose objects must have sorted keys, none twice: one meaning
    for every reader (a duplicate key reads differently in different parsers)."""
    try:
        return json.loads(text, object_pairs_hook=_sorted_object)
    except ValueError:
        raise Bad("not valid JSON")


def verify(path, pub_pem, kid, tmp):
    """Checks every line of the ledger at `path` (steps 1-3 and the final newline); returns
    its records and the SHA-256 of each line, or raises Bad naming the first bad record."""
    with open(path, "rb") as f:
        data = f.read()
    lines = data.split(b"\n")
    if lines[-1] != b"":
        n = len(lines) - 1
        raise Bad(f"record {n} (line {n + 1}): the last line has no final newline")
    prev, records, heads = "0" * 64, [], []
    for i, raw in enumerate(lines[:-1]):
        def bad(what):
            return Bad(f"record {i} (line {i + 1}): {what}")
        try:
            rec = parse_canonical(raw.decode("utf-8"))
        except (Bad, UnicodeDecodeError) as e:
            raise bad(str(e))
        if not isinstance(rec, dict):
            raise bad("not a JSON object")
        if rec.get("seq") != i:
            raise bad(f"seq is {rec.get('seq')}, expected {i} (deleted, inserted or reordered record)")
        if rec.get("prev") != prev:
            raise bad("prev does not match the hash of the previous line")
        if rec.get("key_id") != kid:
            raise bad(f"signed by another key (key_id {rec.get('key_id')}, the public key's is {kid})")
        text = raw.decode("utf-8")
        m = SIG.search(text)
        if not m or m.group(1) != rec.get("sig"):
            raise bad("no Ed25519 sig member")
        body = (text[:m.start()] + text[m.end():]).encode("utf-8")
        if not openssl_verifies(pub_pem, body, bytes.fromhex(m.group(1)), tmp):
            raise bad("Ed25519 signature does not match (edited record)")
        prev = hashlib.sha256(raw).hexdigest()
        records.append(rec)
        heads.append(prev)
    return records, heads


def check_tail(heads, head, records):
    """Raises Bad unless the ledger's line `records` hashes to `head` (a tail cut off, or
    rewritten, after a certificate or a kept copy committed to it)."""
    if not isinstance(records, int) or isinstance(records, bool) or records < 0:
        raise Bad(f"the record count {records!r} is not a count")
    if not isinstance(head, str) or not re.fullmatch(r"[0-9a-f]{64}", head):
        raise Bad(f"the head {head!r} is not a SHA-256 in hex")
    if records == 0 and head != "0" * 64:
        raise Bad(f"--records 0 covers no record, but --head is {head}")
    if records > len(heads):
        raise Bad(f"the ledger holds {len(heads)} records, fewer than the {records} "
                  "covered: records were cut off at its tail")
    if records > 0 and heads[records - 1] != head:
        raise Bad(f"record {records - 1} hashes to {heads[records - 1]}, not the head {head} given")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("ledger")
    p.add_argument("--public-key", required=True)
    p.add_argument("--head")
    p.add_argument("--records", type=int)
    a = p.parse_args()
    if (a.head is None) != (a.records is None):
        sys.exit("error: --head and --records go together (a certificate's or a kept copy's)")
    kid = key_id(a.public_key)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            _, heads = verify(a.ledger, a.public_key, kid, tmp)
        if a.records is not None:
            check_tail(heads, a.head, a.records)
    except Bad as e:
        sys.exit(f"error: {e}")
    print(f"ok: {len(heads)} records, head {heads[-1] if heads else '0' * 64}")


if __name__ == "__main__":
    main()
