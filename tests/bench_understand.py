"""Benchmark: how well vanthu understands a labelled folder of mail (prints figures only).

    uv run python tests/bench_understand.py [FOLDER | --generated]

FOLDER (default ../shared/corpus) holds *.eml and a labels.json of the corpus's shape, and
optionally a context.json with the cases that exist before the mails (for replies).
`--generated` first writes the generated evaluation set (tests/generated/make.py, default
count and seed) into a temporary folder and scores that. Prints kind accuracy per kind, a
confusion table, exact-match accuracy per document field (after NFC; numbers compared without
leading zeros), applicant accuracy, mails per second, and the traps of the mails read wrong.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
import unicodedata
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from daemon import config  # noqa: E402
from daemon.understand import understand  # noqa: E402

FIELDS = ("number", "symbol", "type", "issuer", "place", "date", "summary", "urgency",
          "confidentiality")


class Cases:
    def __init__(self, context: dict[str, Any]) -> None:
        cases = context.get("cases", [])
        self.codes = {c["case_ref"] for c in cases}
        self.threads = {m: c["case_ref"] for c in cases for m in c.get("message_ids", [])}

    def case_exists(self, code: str) -> bool:
        return code in self.codes

    def case_of_message_id(self, message_id: str) -> str | None:
        return self.threads.get(message_id)

    def is_our_message(self, message_id: str) -> bool:
        return False

    def case_secrecy(self, code: str) -> str | None:
        return None


def same(field: str, want: Any, got: Any) -> bool:
    if isinstance(want, str) and isinstance(got, str):
        want, got = unicodedata.normalize("NFC", want), unicodedata.normalize("NFC", got)
        if field == "number":
            return bool(want.lstrip("0") == got.lstrip("0"))
    return bool(want == got)


def main() -> int:
    if sys.argv[1:] == ["--generated"]:
        from tests.generated.make import generate

        with tempfile.TemporaryDirectory() as tmp:
            generate(Path(tmp))
            return score(Path(tmp))
    return score(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT.parent / "shared" / "corpus")


def score(folder: Path) -> int:
    labels = json.loads((folder / "labels.json").read_text(encoding="utf-8"))
    context_file = folder / "context.json"
    context = json.loads(context_file.read_text(encoding="utf-8")) if context_file.exists() \
        else {}
    settings: dict[str, Any] = {}
    if context.get("authserv_id"):
        settings["security"] = {"authserv_id": context["authserv_id"]}
    cfg = config.parse(settings, file="bench", text="", base=folder)
    cases = Cases(context)

    confusion: Counter[tuple[str, str]] = Counter()
    fields: dict[str, list[bool]] = defaultdict(list)
    applicants: list[bool] = []
    cases_ok: list[bool] = []
    crashes: list[str] = []
    wrong_by_trap: Counter[str] = Counter()
    started = time.perf_counter()
    for label in labels:
        raw = (folder / label["file"]).read_bytes()
        try:
            _, und = understand(raw, cfg, cases)
        except Exception as err:  # bench: a crash is a result to report, not to hide
            crashes.append(f"{label['file']}: {type(err).__name__}: {err}")
            confusion[(label["kind"], "crash")] += 1
            continue
        got_kind = und.kind.value
        if got_kind in (label.get("kind_also_ok") or []):
            got_kind = label["kind"]
        confusion[(label["kind"], got_kind)] += 1
        verdicts = [got_kind == label["kind"], und.case_ref == label.get("case_ref")]
        cases_ok.append(verdicts[-1])
        if label.get("document"):
            got = und.document.as_json() if und.document else {}
            for name in FIELDS:
                fields[name].append(same(name, label["document"].get(name), got.get(name)))
                verdicts.append(fields[name][-1])
        if label.get("applicant"):
            applicants.append(bool(und.applicant) and
                              und.applicant.as_json() == label["applicant"])  # type: ignore[union-attr]
            verdicts.append(applicants[-1])
        if not all(verdicts):
            wrong_by_trap.update(label.get("traps") or ["(none)"])
    elapsed = time.perf_counter() - started

    kinds = sorted({k for pair in confusion for k in pair})
    print(f"{len(labels)} mails from {folder}: {len(labels) / elapsed:.0f} mails/s "
          f"({elapsed:.2f} s, one process), {len(crashes)} crashes")
    print("\nkind accuracy")
    for kind in sorted({w for w, _ in confusion}):
        total = sum(n for (w, _), n in confusion.items() if w == kind)
        right = confusion[(kind, kind)]
        print(f"  {kind:9} {right:3}/{total:<3} {100 * right / total:6.1f}%")
    right = sum(n for (w, g), n in confusion.items() if w == g)
    print(f"  {'all':9} {right:3}/{len(labels):<3} {100 * right / len(labels):6.1f}%")
    print("\nconfusion (rows: label, columns: vanthu)")
    print("  " + " " * 9 + "".join(f"{k[:8]:>9}" for k in kinds))
    for want in kinds:
        if any(w == want for w, _ in confusion):
            print(f"  {want:9}" + "".join(f"{confusion[(want, g)] or '.':>9}" for g in kinds))
    print("\ndocument fields (exact match after NFC)")
    for name in FIELDS:
        results = fields[name]
        if results:
            print(f"  {name:16} {sum(results):3}/{len(results):<3} "
                  f"{100 * sum(results) / len(results):6.1f}%")
    if applicants:
        print(f"  {'applicant':16} {sum(applicants):3}/{len(applicants):<3} "
              f"{100 * sum(applicants) / len(applicants):6.1f}%")
    print(f"  {'case_ref':16} {sum(cases_ok):3}/{len(cases_ok):<3} "
          f"{100 * sum(cases_ok) / max(len(cases_ok), 1):6.1f}%")
    if wrong_by_trap:
        print("\ntraps of the mails read wrong (any field or kind), most frequent first")
        for trap, n in wrong_by_trap.most_common(20):
            print(f"  {trap:32} {n:4}")
    for crash in crashes:
        print("CRASH", crash)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
