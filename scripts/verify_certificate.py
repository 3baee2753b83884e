#!/usr/bin/env python3
"""Verifies a peng compute-delivery certificate independently of peng: only the Python
standard library and the `openssl` command line (OpenSSL 3). docs/VERIFYING.md walks through
the same steps by hand; accounting/certificate.h is the certificate's format.

  verify_certificate.py CERT.json --public-key PUB.pem [LEDGER...] [--ledger-public-key P]

1. The certificate: one line in canonical form; "key_id" is the public key's id and "sig" an
   Ed25519 signature, under it, of the line with its ',"sig":"..."' member cut out.
2. With ledgers: each is verified as scripts/verify_ledger.py does (chain, key, signatures;
   under --ledger-public-key, else the certificate's key), matched to the certificate's
   "ledgers" entry whose "first" is the hash of its first line, and its line "records" must
   hash to the entry's "head" (a tail cut off or rewritten fails). Every covered ledger must
   be given.
3. The figures are recomputed from the covered records: each record counts its job's
   cumulative totals minus those of the job's previous record in the same ledger, when its
   "time" is in [from, to) (and its project is the certificate's, if it names one); per
   device model and in total: jobs, device-hours, PFLOP/s-hours, tokens, model FLOPs,
   energy (kWh, or not measured), average MFU and goodput; per job the same, and the job
   list itself. Numbers must agree within 1e-9 relative.
Prints "ok: ..." and exits 0, or "error: what" (naming the record or field) and exits 1.
"""
import argparse, calendar, json, os, re, sys, tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import verify_ledger  # noqa: E402  (the ledger checks, shared)

FORMAT = "peng-certificate/1"
SIG = re.compile(r',"sig":"([0-9a-f]{128})"')
TIME = re.compile(r"^(\d{4})-(\d\d)-(\d\d)(?:T(\d\d):(\d\d):(\d\d)(\.\d+)?Z)?$")


def fail(what):
    sys.exit(f"error: {what}")


def unix(text):
    m = TIME.match(text or "")
    if not m:
        raise ValueError(f"not a UTC time: {text!r}")
    y, mo, d, h, mi, s = (int(g or 0) for g in m.groups()[:6])
    return calendar.timegm((y, mo, d, h, mi, s)) + float(m.group(7) or 0)


def read_certificate(path, pub, kid, tmp):
    with open(path, "rb") as f:
        raw = f.read()
    if not raw.endswith(b"\n") or raw.count(b"\n") != 1:
        fail(f"{path}: not one line ending in a newline")
    text = raw[:-1].decode("utf-8")
    cert = json.loads(text)
    if not isinstance(cert, dict) or cert.get("format") != FORMAT:
        fail(f'{path}: not a peng certificate (no "format": "{FORMAT}")')
    if cert.get("key_id") != kid:
        fail(f"{path}: signed by another key (key_id {cert.get('key_id')}, the public key's is {kid})")
    m = SIG.search(text)
    if not m or m.group(1) != cert.get("sig"):
        fail(f"{path}: no Ed25519 sig member")
    body = (text[:m.start()] + text[m.end():]).encode("utf-8")
    if not verify_ledger.openssl_verifies(pub, body, bytes.fromhex(m.group(1)), tmp):
        fail(f"{path}: Ed25519 signature does not match: the certificate was changed after it was signed")
    return cert


def covered_records(cert, paths, pub, kid, tmp):
    """The records each covered ledger held when the certificate was issued, in its order."""
    entries = cert["ledgers"]
    covered = [None] * len(entries)
    for path in paths:
        try:
            records, heads = verify_ledger.verify(path, pub, kid, tmp)
        except verify_ledger.Bad as e:
            fail(f"{path}: {e}")
        index = next((i for i, e in enumerate(entries) if heads and e["first"] == heads[0]), None)
        if index is None:
            fail(f"{path} is not a ledger the certificate covers")
        if covered[index] is not None:
            fail(f"{path} is the same ledger as another one given")
        try:
            verify_ledger.check_tail(heads, entries[index]["head"], entries[index]["records"])
        except verify_ledger.Bad as e:
            fail(f"{path}: {e}")
        covered[index] = records[:entries[index]["records"]]
    for e, records in zip(entries, covered):
        if records is None:
            fail(f"the certificate covers ledger {e['name']} ({e['records']} records) but it was not given")
    return covered


class Sum:
    """The sums behind one row of the certificate (accounting/report.h's columns)."""

    def __init__(self):
        self.jobs, self.device_s, self.productive, self.tokens = set(), 0.0, 0.0, 0
        self.flops, self.mfu_flops, self.capacity = 0.0, 0.0, 0.0
        self.energy_j, self.rated = 0.0, 0.0

    def add(self, job, d):
        self.jobs.add(job)
        self.device_s += d["device_s"]
        self.productive += d["productive"]
        self.tokens += d["tokens"]
        self.flops += d["flops"]
        self.mfu_flops += d["mfu_flops"]
        self.capacity += d["capacity"]
        self.energy_j = None if self.energy_j is None or d["energy_j"] is None else self.energy_j + d["energy_j"]
        self.rated = None if self.rated is None or d["rated"] is None else self.rated + d["rated"]

    def figures(self):
        return {"jobs": len(self.jobs), "device_hours": self.device_s / 3600,
                "pflops_hours": None if self.rated is None else self.rated / 3600 / 1e15,
                "tokens": self.tokens, "model_flops": self.flops,
                "energy_kwh": None if self.energy_j is None else self.energy_j / 3.6e6,
                "avg_mfu": self.mfu_flops / self.capacity if self.capacity > 0 else None,
                "goodput": self.productive / self.device_s if self.device_s > 0 else None}


def totals(r):
    mfu, peak, energy = r.get("mfu"), r.get("peak_flops"), r.get("energy_j")
    counted = mfu is not None and mfu > 0
    return {"device_s": r["device_seconds"], "productive": r["productive_s"] * r["devices"],
            "tokens": r["tokens"], "flops": r["model_flops"],
            "mfu_flops": r["model_flops"] if counted else 0.0,
            "capacity": r["model_flops"] / mfu if counted else 0.0,
            "energy_j": energy, "rated": None if peak is None else r["device_seconds"] * peak}


def delta(cur, prev):
    return {k: (None if cur[k] is None or prev[k] is None else cur[k] - prev[k]) for k in cur}


def recompute(cert, ledgers):
    start, end = unix(cert["period"]["from"]), unix(cert["period"]["to"])
    project = cert.get("project")
    devices, jobs, total = {}, {}, Sum()
    for records in ledgers:
        previous = {}
        zero = {k: 0.0 for k in totals({"device_seconds": 0, "productive_s": 0, "devices": 0,
                                        "tokens": 0, "model_flops": 0, "peak_flops": 0,
                                        "energy_j": 0})}
        for r in records:
            key = (r["job"], r["start"])
            cur = totals(r)
            d = delta(cur, previous.get(key, zero))
            previous[key] = cur
            t = unix(r["time"])
            if t < start or t >= end or (project is not None and r["project"] != project):
                continue
            devices.setdefault(r["device"], Sum()).add(r["job"], d)
            jobs.setdefault(r["job"], Sum()).add(r["job"], d)
            total.add(r["job"], d)
    return ({k: s.figures() for k, s in devices.items()}, {k: s.figures() for k, s in jobs.items()},
            total.figures())


def same(a, b):
    if a is None or b is None:
        return a is None and b is None
    return abs(a - b) <= 1e-9 * max(abs(a), abs(b))


def compare(where, claimed, figures):
    for field, value in figures.items():
        if field not in claimed or not same(claimed[field], value):
            fail(f"{where}.{field}: the certificate says {json.dumps(claimed.get(field))}, "
                 f"the ledgers give {json.dumps(value)}")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("certificate")
    p.add_argument("ledgers", nargs="*")
    p.add_argument("--public-key", required=True)
    p.add_argument("--ledger-public-key")
    a = p.parse_intermixed_args()
    kid = verify_ledger.key_id(a.public_key)
    ledger_pub = a.ledger_public_key or a.public_key
    with tempfile.TemporaryDirectory() as tmp:
        cert = read_certificate(a.certificate, a.public_key, kid, tmp)
        line = f"ok: certificate {cert['contract']} signed by key {kid}"
        if a.ledgers:
            ledgers = covered_records(cert, a.ledgers, ledger_pub, verify_ledger.key_id(ledger_pub), tmp)
            devices, jobs, total = recompute(cert, ledgers)
            if sorted(devices) != [d["key"] for d in cert["devices"]]:
                fail(f"devices: the certificate lists {[d['key'] for d in cert['devices']]}, "
                     f"the ledgers give {sorted(devices)}")
            for i, d in enumerate(cert["devices"]):
                compare(f"devices[{i}]", d, devices[d["key"]])
            if sorted(jobs) != [j["job"] for j in cert["jobs"]]:
                fail(f"jobs: the certificate lists {[j['job'] for j in cert['jobs']]}, "
                     f"the ledgers give {sorted(jobs)}")
            for i, j in enumerate(cert["jobs"]):
                figures = jobs[j["job"]]
                del figures["jobs"]
                compare(f"jobs[{i}]", j, figures)
            compare("total", cert["total"], total)
            line += f"; {len(ledgers)} ledgers hold every record it covers, figures recomputed"
    print(line)


if __name__ == "__main__":
    main()
