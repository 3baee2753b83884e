#!/usr/bin/env python3
"""Verifies a peng compute-delivery certificate independently of peng: only the Python
standard library and the `openssl` command line (OpenSSL 3). docs/VERIFYING.md walks through
the same steps by hand; accounting/certificate.h is the certificate's format.

  verify_certificate.py CERT.json --public-key PUB.pem [LEDGER...] [--ledger-public-key P]

1. The certificate: one line, every object's keys sorted and none twice (so every reader
   sees the same values); "key_id" is the public key's id and "sig" an Ed25519 signature,
   under it, of the line with its ',"sig":"..."' member cut out.
2. With ledgers: each is verified as scripts/verify_ledger.py does (chain, key, signatures;
   under --ledger-public-key, else the certificate's key), matched to the certificate's
   "ledgers" entry whose "first" is the hash of its first line, and its line "records" must
   hash to the entry's "head" (a tail cut off or rewritten fails). Every covered ledger must
   be given.
3. The certificate is rebuilt from the covered records and compared field by field: each
   record counts its job's cumulative totals minus those of the job's previous record (same
   "job" and "start") in the same ledger, when its "time" is in [from, to) (and its project
   is the certificate's, if it names one); per device model, per job and in total. Strings,
   integers, nulls and the set of fields must be equal; other numbers within 1e-9 relative.
Prints "ok: ..." and exits 0, or "error: what" (naming the file, record or field) and exits 1.
"""
import argparse, calendar, datetime, json, math, os, re, sys, tempfile, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import verify_ledger  # noqa: E402  (the ledger checks, shared)

FORMAT = "peng-certificate/1"
CAPACITY_UNIT = ("PFLOP/s-hours: device-hours x the device's dense BF16/FP16 peak FLOP/s (the "
                 "peak each record was rated at, named in \"peaks\"), / 1e15")
SIG = re.compile(r',"sig":"([0-9a-f]{128})"')
TIME = re.compile(r"^(\d{4})-(\d\d)-(\d\d)(?:T(\d\d):(\d\d):(\d\d)(\.\d+)?Z)?$")


class Bad(Exception):
    """What is wrong, for the error line."""


def unix(text, what):
    """Unix seconds of "YYYY-MM-DD[THH:MM:SS[.fff]Z]" (as peng's report::parse_time)."""
    m = TIME.match(text) if isinstance(text, str) else None
    if not m:
        raise Bad(f"{what}: {text!r} is not a UTC time (YYYY-MM-DDTHH:MM:SSZ)")
    y, mo, d, h, mi, s = (int(g or 0) for g in m.groups()[:6])
    try:
        datetime.date(y, mo, d)
    except ValueError:
        raise Bad(f"{what}: {text!r} is not a date")
    if h > 23 or mi > 59 or s > 59:
        raise Bad(f"{what}: {text!r} is not a time of day")
    return calendar.timegm((y, mo, d, h, mi, s)) + float(m.group(7) or 0)


def format_time(t):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(math.floor(t)))


def read_certificate(path, pub, kid, tmp):
    with open(path, "rb") as f:
        raw = f.read()
    if not raw.endswith(b"\n") or raw.count(b"\n") != 1:
        raise Bad(f"{path}: not one line ending in a newline")
    text = raw[:-1].decode("utf-8")
    try:
        cert = verify_ledger.parse_canonical(text)
    except verify_ledger.Bad as e:
        raise Bad(f"{path}: {e}")
    if not isinstance(cert, dict) or cert.get("format") != FORMAT:
        raise Bad(f'{path}: not a peng certificate (no "format": "{FORMAT}")')
    if cert.get("key_id") != kid:
        raise Bad(f"{path}: signed by another key (key_id {cert.get('key_id')}, the public key's is {kid})")
    m = list(SIG.finditer(text))
    if len(m) != 1 or m[0].group(1) != cert.get("sig"):
        raise Bad(f"{path}: no single Ed25519 sig member")
    body = (text[:m[0].start()] + text[m[0].end():]).encode("utf-8")
    if not verify_ledger.openssl_verifies(pub, body, bytes.fromhex(m[0].group(1)), tmp):
        raise Bad(f"{path}: Ed25519 signature does not match: the certificate was changed after it was signed")
    return cert


def field(obj, key, kind, where):
    """obj[key], which must be of `kind` (a bool is no integer)."""
    if not isinstance(obj, dict) or key not in obj:
        raise Bad(f"{where}.{key} is missing")
    v = obj[key]
    if not isinstance(v, kind) or (isinstance(v, bool) and kind is not bool):
        raise Bad(f"{where}.{key} is {json.dumps(v)}, not of the right type")
    return v


def covered_records(cert, paths, pub, kid, tmp):
    """Each covered ledger: (its entry, the records it held when the certificate was issued)."""
    entries = field(cert, "ledgers", list, "certificate")
    for i, e in enumerate(entries):
        where = f"ledgers[{i}]"
        for key in ("name", "first", "head", "key_id"):
            field(e, key, str, where)
        if field(e, "records", int, where) < 1:
            raise Bad(f"{where}.records is {e['records']}: a covered ledger holds at least 1 record")
    covered = [None] * len(entries)
    for path in paths:
        try:
            records, heads = verify_ledger.verify(path, pub, kid, tmp)
        except verify_ledger.Bad as e:
            raise Bad(f"{path}: {e}")
        index = next((i for i, e in enumerate(entries) if heads and e["first"] == heads[0]), None)
        if index is None:
            raise Bad(f"{path} is not a ledger the certificate covers")
        if covered[index] is not None:
            raise Bad(f"{path} is the same ledger as another one given")
        try:
            verify_ledger.check_tail(heads, entries[index]["head"], entries[index]["records"])
        except verify_ledger.Bad as e:
            raise Bad(f"{path}: {e}")
        covered[index] = records[:entries[index]["records"]]
    for e, records in zip(entries, covered):
        if records is None:
            raise Bad(f"the certificate covers ledger {e['name']} ({e['records']} records) but it was not given")
    return list(zip(entries, covered))


def plus(a, b):
    return None if a is None or b is None else a + b


class Sum:
    """The sums behind one row (accounting/report.h's columns)."""

    def __init__(self):
        self.jobs, self.peaks = set(), set()
        self.t = {"device_s": 0.0, "productive": 0.0, "tokens": 0, "flops": 0.0, "mfu_flops": 0.0,
                  "capacity": 0.0, "energy_j": 0.0, "rated": 0.0}

    def add(self, job, d, peak):
        self.jobs.add(job)
        if peak is not None:
            self.peaks.add(peak)
        self.t = {k: plus(self.t[k], d[k]) for k in self.t}

    def row(self, key):
        t = self.t
        return {"key": key, "jobs": len(self.jobs), "device_hours": t["device_s"] / 3600,
                "pflops_hours": None if t["rated"] is None else t["rated"] / 3600 / 1e15,
                "peaks": [{"source": s, "tflops": f} for s, f in sorted(self.peaks)],
                "model_flops": t["flops"],
                "avg_mfu": t["mfu_flops"] / t["capacity"] if t["capacity"] > 0 else None,
                "goodput": t["productive"] / t["device_s"] if t["device_s"] > 0 else None,
                "tokens": t["tokens"],
                "energy_kwh": None if t["energy_j"] is None else t["energy_j"] / 3.6e6,
                "energy": "not measured" if t["energy_j"] is None else "measured"}


def number(r, key, where, optional=False):
    v = r.get(key)
    if optional and v is None:
        return None
    if not isinstance(v, (int, float)) or isinstance(v, bool):
        raise Bad(f'{where}: field "{key}" is missing or not a number')
    return v


def totals(r, where):
    mfu = number(r, "mfu", where, True)
    flops = number(r, "model_flops", where)
    peak = number(r, "peak_flops", where, True)
    device_s = number(r, "device_seconds", where)
    counted = mfu is not None and mfu > 0
    return {"device_s": device_s, "productive": number(r, "productive_s", where) * r["devices"],
            "tokens": r["tokens"], "flops": flops, "mfu_flops": flops if counted else 0.0,
            "capacity": flops / mfu if counted else 0.0,
            "energy_j": number(r, "energy_j", where, True),
            "rated": None if peak is None else device_s * peak,
            "steps": r["steps"]}


def rated_peak(r, where):
    """(peak_source, TFLOP/s) a record was rated at, or None."""
    flops = number(r, "peak_flops", where, True)
    if flops is None:
        return None
    source = r.get("peak_source")
    return (source if isinstance(source, str) else "", flops / 1e12)


def delta(cur, prev):
    return {k: (None if cur[k] is None or prev[k] is None else cur[k] - prev[k]) for k in cur}


ZERO = {"device_s": 0.0, "productive": 0.0, "tokens": 0, "flops": 0.0, "mfu_flops": 0.0,
        "capacity": 0.0, "energy_j": 0.0, "rated": 0.0, "steps": 0}


def rebuild(cert, ledgers):
    """The certificate as peng's certificate::build makes it from these records."""
    for key in ("contract", "supplier", "customer", "issued"):
        if not field(cert, key, str, "certificate"):
            raise Bad(f"certificate.{key} is empty")
    if cert.get("project") is not None:
        field(cert, "project", str, "certificate")
    period = field(cert, "period", dict, "certificate")
    start = unix(field(period, "from", str, "period"), "period.from")
    end = unix(field(period, "to", str, "period"), "period.to")
    project = cert.get("project")
    devices, job_sums, jobs, total, counted = {}, {}, {}, Sum(), 0
    for entry, records in ledgers:
        previous = {}
        for i, r in enumerate(records):
            where = f"ledger {entry['name']}: record {i}"
            for key in ("devices", "tokens", "steps"):
                field(r, key, int, where)
            key = (field(r, "job", str, where), field(r, "start", str, where))
            cur = totals(r, where)
            d = delta(cur, previous.get(key, ZERO))
            previous[key] = cur
            t = unix(field(r, "time", str, where), f"{where}: time")
            if t < start or t >= end or (project is not None and r.get("project") != project):
                continue
            counted += 1
            peak = rated_peak(r, where)
            job = r["job"]
            devices.setdefault(r["device"], Sum()).add(job, d, peak)
            job_sums.setdefault(job, Sum()).add(job, d, peak)
            total.add(job, d, peak)
            j = jobs.get(job)
            if j is None:
                j = jobs[job] = {"job": job, "start": format_time(unix(r["start"], f"{where}: start")),
                                 "end": None, "steps": 0}
            j.update({"project": r["project"], "user": r["user"], "device": r["device"],
                      "devices": r["devices"], "hosts": r["hosts"], "ledger": entry["name"],
                      "last": format_time(t), "status": r["status"], "config_hash": r["config_hash"],
                      "checkpoint_steps": r["checkpoint_steps"]})
            if r.get("kind") == "end":
                j["end"] = j["last"]
            j["steps"] += d["steps"]
    if counted == 0:
        raise Bad("no ledger record falls in the certificate's period")
    job_list = []
    for job in sorted(jobs):
        row = job_sums[job].row(job)
        del row["key"], row["jobs"]
        job_list.append({**row, **jobs[job]})
    return {"format": FORMAT, "contract": cert["contract"], "supplier": cert["supplier"],
            "customer": cert["customer"], "project": project,
            "period": {"from": format_time(start), "to": format_time(end)},
            "issued": cert["issued"], "capacity_unit": CAPACITY_UNIT,
            "devices": [devices[k].row(k) for k in sorted(devices)], "total": total.row("all"),
            "jobs": job_list,
            "ledgers": [{"name": e["name"], "first": e["first"], "head": e["head"],
                         "records": len(records), "key_id": records[0]["key_id"]}
                        for e, records in ledgers],
            "key_id": cert["key_id"], "sig": cert["sig"]}


def is_number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def compare(claimed, rebuilt, where):
    """Raises Bad at the first field where the certificate and the rebuilt one differ."""
    def differs():
        return Bad(f"{where}: the certificate says {json.dumps(claimed, ensure_ascii=False)}, "
                   f"the ledgers give {json.dumps(rebuilt, ensure_ascii=False)}")

    def at(key):
        return f"{where}.{key}" if where else key
    if is_number(claimed) and is_number(rebuilt):
        if isinstance(claimed, int) != isinstance(rebuilt, int):
            ok = False  # an integer field written as a decimal, or the reverse
        elif isinstance(claimed, int):
            ok = claimed == rebuilt
        else:
            ok = abs(claimed - rebuilt) <= 1e-9 * max(abs(claimed), abs(rebuilt))
        if not ok:
            raise differs()
    elif type(claimed) is not type(rebuilt):
        raise differs()
    elif isinstance(claimed, dict):
        for key in claimed:
            if key not in rebuilt:
                raise Bad(f"{at(key)}: not a certificate field")
        for key in rebuilt:
            if key not in claimed:
                raise Bad(f"{at(key)}: missing from the certificate")
            compare(claimed[key], rebuilt[key], at(key))
    elif isinstance(claimed, list):
        if len(claimed) != len(rebuilt):
            raise Bad(f"{where}: the certificate lists {len(claimed)}, the ledgers give {len(rebuilt)}")
        for i, (a, b) in enumerate(zip(claimed, rebuilt)):
            compare(a, b, f"{where}[{i}]")
    elif claimed != rebuilt:
        raise differs()


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
        line = f"ok: certificate {cert.get('contract')} signed by key {kid}"
        if a.ledgers:
            ledgers = covered_records(cert, a.ledgers, ledger_pub, verify_ledger.key_id(ledger_pub), tmp)
            compare(cert, rebuild(cert, ledgers), "")
            line += f"; {len(ledgers)} ledgers hold every record it covers, every field recomputed"
    print(line)


if __name__ == "__main__":
    try:
        main()
    except Bad as e:
        sys.exit(f"error: {e}")
    except (OSError, UnicodeDecodeError) as e:
        sys.exit(f"error: {e}")
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        sys.exit(f"error: a field is missing or of the wrong type ({type(e).__name__}: {e})")
