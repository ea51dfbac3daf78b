#!/usr/bin/env python3
"""Helpers for bench/compare (Python 3 standard library only).

Subcommands (all paths absolute):
  select CORPUS WORK LIMIT   read CORPUS/MANIFEST.tsv, pick the messages (first LIMIT ham and
                             LIMIT spam, 0 = all), write WORK/labels.tsv, WORK/full.list,
                             WORK/headers.list, WORK/full/ (symlinks + MANIFEST.tsv) and
                             WORK/headers/ (header-only copies + MANIFEST.tsv).
  score-sa FILTER VARIANT SECONDS RESULTS WORK OUT
                             RESULTS: lines "exitcode<TAB>path" from spamc -c
  score-rspamd FILTER VARIANT SECONDS RESULTS WORK OUT
                             RESULTS: rspamc text output
  score-ours FILTER VARIANT JSONFILE WORK OUT
                             JSONFILE: stdout of `quietdesk filter eval DIR --json`
  table WORK RESULTS_JSONL JSON_OUT|- [KEY=VALUE...]
                             print the table; write JSON if JSON_OUT is not "-"
  cpu PID                    CPU seconds used so far by the process tree rooted at PID
                             (live processes plus the children they have reaped)
  cpu-children PID           CPU seconds of PID's reaped children (cutime + cstime)
  dns-stub PORT LOG          a DNS server on 127.0.0.1:PORT that answers every query with
                             SERVFAIL at once (logs the names asked); runs until killed

Each score-* appends one JSON object (one line) to OUT.
"""

import json
import os
import platform
import re
import sys
import time

# rspamd actions that count as "judged spam". Everything else ("no action", "greylist",
# "soft reject") counts as ham. Documented in bench/README.md.
RSPAMD_SPAM_ACTIONS = {"reject", "add header", "rewrite subject"}


def die(msg, code=1):
    print(f"compare.py: {msg}", file=sys.stderr)
    sys.exit(code)


# ---------------------------------------------------------------- select


def header_only(data: bytes) -> bytes:
    """The header block up to (not including) the first empty line, then one empty line.

    An mbox "From " envelope line at the top is kept as-is (it is part of the first block).
    """
    out = []
    crlf = False
    for line in data.splitlines(keepends=True):
        if line in (b"\n", b"\r\n", b"\r"):
            break
        out.append(line)
    if out and out[0].endswith(b"\r\n"):
        crlf = True
    eol = b"\r\n" if crlf else b"\n"
    if out and not out[-1].endswith((b"\n", b"\r")):
        out[-1] += eol  # message without a body and without a final newline
    return b"".join(out) + eol


def cmd_select(corpus, work, limit):
    limit = int(limit)
    manifest = os.path.join(corpus, "MANIFEST.tsv")
    with open(manifest, encoding="utf-8") as f:
        lines = f.read().splitlines()
    if not lines:
        die(f"{manifest} is empty", 2)
    header = [h.strip() for h in lines[0].split("\t")]
    try:
        fcol, lcol = header.index("file"), header.index("label")
    except ValueError:
        die(f"{manifest}: need `file` and `label` columns, got {header}", 2)
    picked = []
    counts = {"ham": 0, "spam": 0}
    for n, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) <= max(fcol, lcol):
            die(f"{manifest}:{n}: too few columns", 2)
        rel, label = fields[fcol].strip(), fields[lcol].strip()
        if label not in counts:
            die(f"{manifest}:{n}: label {label!r} is neither ham nor spam", 2)
        if limit and counts[label] >= limit:
            continue
        path = os.path.join(corpus, rel)
        if not os.path.isfile(path):
            die(f"{manifest}:{n}: missing file {path}", 2)
        counts[label] += 1
        picked.append((rel, label, os.path.abspath(path)))
    if not picked:
        die("no messages selected", 2)

    full_dir = os.path.join(work, "full")
    hdr_dir = os.path.join(work, "headers")
    with open(os.path.join(work, "labels.tsv"), "w", encoding="utf-8") as lab, \
            open(os.path.join(work, "full.list"), "w", encoding="utf-8") as fl, \
            open(os.path.join(work, "headers.list"), "w", encoding="utf-8") as hl:
        for rel, label, src in picked:
            link = os.path.join(full_dir, rel)
            os.makedirs(os.path.dirname(link), exist_ok=True)
            os.symlink(src, link)
            copy = os.path.join(hdr_dir, rel)
            os.makedirs(os.path.dirname(copy), exist_ok=True)
            with open(src, "rb") as s:
                data = s.read()
            with open(copy, "wb") as d:
                d.write(header_only(data))
            # Both variants are keyed by the relative path.
            lab.write(f"{rel}\t{label}\n")
            fl.write(src + "\n")
            hl.write(copy + "\n")
    for d in (full_dir, hdr_dir):
        with open(os.path.join(d, "MANIFEST.tsv"), "w", encoding="utf-8") as m:
            m.write("file\tlabel\n")
            for rel, label, _ in picked:
                m.write(f"{rel}\t{label}\n")
    # Map absolute paths (as passed to spamc/rspamc) back to relative paths.
    with open(os.path.join(work, "paths.tsv"), "w", encoding="utf-8") as p:
        for rel, _, src in picked:
            p.write(f"{src}\t{rel}\n")
            p.write(f"{os.path.join(hdr_dir, rel)}\t{rel}\n")
    print(f"{counts['ham']}\t{counts['spam']}")


# ---------------------------------------------------------------- scoring


def load_labels(work):
    labels = {}
    with open(os.path.join(work, "labels.tsv"), encoding="utf-8") as f:
        for line in f:
            rel, label = line.rstrip("\n").split("\t")
            labels[rel] = label
    paths = {}
    with open(os.path.join(work, "paths.tsv"), encoding="utf-8") as f:
        for line in f:
            path, rel = line.rstrip("\n").split("\t")
            paths[path] = rel
    return labels, paths


def metrics(filt, variant, labels, verdicts, seconds, note=""):
    """verdicts: rel -> "spam" | "ham" | "error". Errors and missing verdicts count as ham
    (not flagged) and are reported in `errors`."""
    ham = spam = fp = fn = tp = errors = 0
    for rel, label in labels.items():
        v = verdicts.get(rel, "error")
        if v == "error":
            errors += 1
            v = "ham"
        if label == "ham":
            ham += 1
            fp += v == "spam"
        else:
            spam += 1
            if v == "spam":
                tp += 1
            else:
                fn += 1
    n = ham + spam
    return {
        "filter": filt,
        "variant": variant,
        "ham": ham,
        "spam": spam,
        "false_positives": fp,
        "false_negatives": fn,
        "fpr": fp / ham if ham else 0.0,
        "recall": tp / spam if spam else 0.0,
        "precision": tp / (tp + fp) if tp + fp else 0.0,
        "msgs_per_sec": n / seconds if seconds > 0 else 0.0,
        "seconds": seconds,
        "errors": errors,
        "throughput": "wall clock, client included",
        "note": note,
    }


def append(out, rec):
    # CPU seconds of the run, set by bench/compare: daemon tree and client processes.
    daemon, client = os.environ.get("CPU_DAEMON"), os.environ.get("CPU_CLIENT")
    n = rec["ham"] + rec["spam"]
    if daemon is not None and client is not None and n:
        rec["cpu_seconds_daemon"] = float(daemon)
        rec["cpu_seconds_client"] = float(client)
        rec["cpu_ms_per_msg"] = 1000 * (float(daemon) + float(client)) / n
    else:
        rec.setdefault("cpu_ms_per_msg", None)
    with open(out, "a", encoding="utf-8") as f:
        f.write(json.dumps(rec) + "\n")


def cmd_score_sa(filt, variant, seconds, results, work, out):
    labels, paths = load_labels(work)
    verdicts = {}
    codes = {}
    with open(results, encoding="utf-8") as f:
        for line in f:
            line = line.rstrip("\n")
            if not line:
                continue
            code, path = line.split("\t", 1)
            rel = paths.get(path)
            if rel is None:
                continue
            codes[code] = codes.get(code, 0) + 1
            # spamc -c: exit 1 = spam, 0 = ham, anything else = error (-x: no safe fallback)
            verdicts[rel] = {"0": "ham", "1": "spam"}.get(code, "error")
    note = ""
    bad = {c: n for c, n in codes.items() if c not in ("0", "1")}
    if bad:
        note = "spamc errors (exit code: count): " + ", ".join(f"{c}: {n}" for c, n in sorted(bad.items()))
    rec = metrics(filt, variant, labels, verdicts, float(seconds), note)
    append(out, rec)
    report_errors(rec)


RESULT_RE = re.compile(r"^Results for file: (.*) \([0-9.]+ seconds\)$")


def cmd_score_rspamd(filt, variant, seconds, results, work, out):
    labels, paths = load_labels(work)
    verdicts = {}
    actions = {}
    current = None
    with open(results, encoding="utf-8", errors="replace") as f:
        for line in f:
            line = line.rstrip("\n")
            m = RESULT_RE.match(line)
            if m:
                current = paths.get(m.group(1))
                if current is not None:
                    verdicts[current] = "error"  # until an Action line says otherwise
                continue
            if current is not None and line.startswith("Action: "):
                action = line[len("Action: "):].strip()
                actions[action] = actions.get(action, 0) + 1
                verdicts[current] = "spam" if action in RSPAMD_SPAM_ACTIONS else "ham"
                current = None
    note = "rspamd actions: " + ", ".join(f"{a}: {n}" for a, n in sorted(actions.items()))
    rec = metrics(filt, variant, labels, verdicts, float(seconds), note)
    rec["actions"] = actions
    append(out, rec)
    report_errors(rec)


def cmd_score_ours(filt, variant, jsonfile, work, out):
    labels, _ = load_labels(work)
    with open(jsonfile, encoding="utf-8", errors="replace") as f:
        text = f.read()
    start = text.find("{")
    if start < 0:
        die(f"{filt} ({variant}): no JSON in the output of quietdesk (see {jsonfile})")
    try:
        r, _ = json.JSONDecoder().raw_decode(text[start:])
    except json.JSONDecodeError as e:
        die(f"{filt} ({variant}): cannot parse quietdesk JSON: {e}")
    want_ham = sum(1 for v in labels.values() if v == "ham")
    want_spam = len(labels) - want_ham
    note = ""
    if (r.get("ham"), r.get("spam")) != (want_ham, want_spam):
        note = f"WARNING: quietdesk counted {r.get('ham')} ham/{r.get('spam')} spam, expected {want_ham}/{want_spam}"
    rec = {
        "filter": filt,
        "variant": variant,
        "ham": r["ham"],
        "spam": r["spam"],
        "false_positives": r["false_positives"],
        "false_negatives": r["false_negatives"],
        "fpr": r["fpr"],
        "recall": r["recall"],
        "precision": r["precision"],
        "msgs_per_sec": r["msgs_per_sec"],
        "seconds": r.get("seconds"),
        "errors": 0,
        "throughput": "in-process (quietdesk's own timer)",
        "note": note,
        "mode": r.get("mode"),
    }
    append(out, rec)


def report_errors(rec):
    if rec["errors"]:
        print(f"warning: {rec['filter']} ({rec['variant']}): {rec['errors']} messages got no verdict "
              f"(counted as ham). {rec['note']}", file=sys.stderr)


# ---------------------------------------------------------------- CPU accounting


def _stat(pid):
    with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
        text = f.read()
    # the command name (field 2) may contain spaces; fields after it start at ") "
    rest = text[text.rindex(")") + 2:].split()
    ppid = int(rest[1])
    utime, stime, cutime, cstime = (int(x) for x in rest[11:15])
    return ppid, utime, stime, cutime, cstime


def _children():
    kids = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                ppid = _stat(name)[0]
            except (OSError, ValueError, IndexError):
                continue
            kids.setdefault(ppid, []).append(int(name))
    return kids


def cmd_cpu(pid):
    tick = os.sysconf("SC_CLK_TCK")
    kids = _children()
    todo, total = [int(pid)], 0
    while todo:
        p = todo.pop()
        try:
            _, u, s_, cu, cs = _stat(p)
        except (OSError, ValueError, IndexError):
            continue
        total += u + s_ + cu + cs
        todo.extend(kids.get(p, []))
    print(f"{total / tick:.2f}")


def cmd_cpu_children(pid):
    tick = os.sysconf("SC_CLK_TCK")
    _, _, _, cu, cs = _stat(int(pid))
    print(f"{(cu + cs) / tick:.2f}")


# ---------------------------------------------------------------- DNS stub


def cmd_dns_stub(port, logfile):
    """Answer every DNS query with SERVFAIL, immediately. Used as rspamd's only nameserver so
    that a lookup left in some module fails at once (as on a machine without network) instead
    of waiting for a timeout, and nothing is ever sent off the machine."""
    import socket
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", int(port)))
    with open(logfile, "a", encoding="utf-8") as log:
        while True:
            data, addr = sock.recvfrom(4096)
            if len(data) < 12 or data[2] & 0x80:  # too short, or a response
                continue
            # question section: QNAME labels, then QTYPE and QCLASS
            i, labels = 12, []
            try:
                while data[i]:
                    if data[i] & 0xC0:
                        raise IndexError
                    labels.append(data[i + 1:i + 1 + data[i]].decode("ascii", "replace"))
                    i += 1 + data[i]
                end = i + 5
                qtype = int.from_bytes(data[i + 1:i + 3], "big")
                if end > len(data):
                    raise IndexError
            except IndexError:
                continue
            flags = bytes([0x80 | (data[2] & 0x79), 0x80 | 2])  # QR, opcode+RD kept, RA, SERVFAIL
            reply = data[:2] + flags + b"\x00\x01\x00\x00\x00\x00\x00\x00" + data[12:end]
            sock.sendto(reply, addr)
            log.write(f"{qtype}\t{'.'.join(labels)}\n")
            log.flush()


# ---------------------------------------------------------------- table


def machine_info():
    model = ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        load = os.getloadavg()
    except OSError:
        load = None
    return {
        "cores": os.cpu_count(),
        "cpu": model,
        "kernel": platform.release(),
        "loadavg_at_end": [round(x, 2) for x in load] if load else None,
    }


def cmd_table(work, results, json_out, *meta):
    rows = []
    if os.path.exists(results):
        with open(results, encoding="utf-8") as f:
            rows = [json.loads(line) for line in f if line.strip()]
    cols = [
        ("filter", "filter", "<"),
        ("variant", "variant", "<"),
        ("ham", "ham", ">"),
        ("spam", "spam", ">"),
        ("FP", "false_positives", ">"),
        ("FN", "false_negatives", ">"),
        ("FPR %", "fpr", ">"),
        ("recall %", "recall", ">"),
        ("precision %", "precision", ">"),
        ("msgs/s", "msgs_per_sec", ">"),
        ("CPU ms/msg", "cpu_ms_per_msg", ">"),
    ]

    def cell(row, key):
        v = row.get(key)
        if key in ("fpr", "recall", "precision"):
            return f"{100 * v:.1f}"
        if key == "msgs_per_sec":
            return f"{v:,.0f}" if v >= 100 else f"{v:.1f}"
        if key == "cpu_ms_per_msg":
            return "-" if v is None else (f"{v:.1f}" if v >= 1 else f"{v:.2f}")
        return str(v)

    table = [[h for h, _, _ in cols]] + [[cell(r, k) for _, k, _ in cols] for r in rows]
    widths = [max(len(t[i]) for t in table) for i in range(len(cols))]
    for n, t in enumerate(table):
        print("  ".join(f"{c:{a}{w}}" for c, w, (_, _, a) in zip(t, widths, cols)).rstrip())
        if n == 0:
            print("  ".join("-" * w for w in widths))
    mi = machine_info()
    print()
    print(f"machine: {mi['cores']} cores, {mi['cpu'] or 'unknown CPU'}, Linux {mi['kernel']}, "
          f"load average at end {mi['loadavg_at_end']}")
    print("msgs/s: spamassassin and rspamd = messages / wall-clock seconds of the client run "
          "(spamc/rspamc included, daemon already up);")
    print("        quietdesk = its own in-process timer (reading + parsing + judging, process start excluded)")
    print("CPU ms/msg: CPU time (user+sys) of the daemon and the client processes during the run, per "
          "message; not measured for quietdesk (-)")
    if any(r["filter"] == "rspamd" for r in rows):
        print("rspamd: judged spam = action " + ", ".join(sorted(RSPAMD_SPAM_ACTIONS))
              + "; anything else (no action, greylist, soft reject) = ham")
    for r in rows:
        extra = []
        if r.get("errors"):
            extra.append(f"{r['errors']} without verdict (counted as ham)")
        if r.get("note"):
            extra.append(r["note"])
        if extra:
            print(f"  {r['filter']} {r['variant']}: " + "; ".join(extra))
    if json_out != "-":
        doc = {
            "generated": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "machine": mi,
            "meta": dict(m.split("=", 1) for m in meta if "=" in m),
            "rspamd_spam_actions": sorted(RSPAMD_SPAM_ACTIONS),
            "results": rows,
        }
        with open(json_out, "w", encoding="utf-8") as f:
            json.dump(doc, f, indent=2)
            f.write("\n")
        print(f"\nJSON written to {json_out}")


def main(argv):
    if len(argv) < 2:
        die(__doc__)
    cmd, args = argv[1], argv[2:]
    fns = {
        "select": (cmd_select, 3),
        "score-sa": (cmd_score_sa, 6),
        "score-rspamd": (cmd_score_rspamd, 6),
        "score-ours": (cmd_score_ours, 5),
        "table": (cmd_table, 3),
        "cpu": (cmd_cpu, 1),
        "cpu-children": (cmd_cpu_children, 1),
        "dns-stub": (cmd_dns_stub, 2),
    }
    if cmd not in fns:
        die(f"unknown subcommand {cmd}\n{__doc__}")
    fn, nargs = fns[cmd]
    if len(args) < nargs or (cmd != "table" and len(args) != nargs):
        die(f"{cmd}: expected {nargs} arguments, got {len(args)}")
    fn(*args)


if __name__ == "__main__":
    main(sys.argv)
