"""Exports: a flat table (CSV/JSON), a LaTeX table, and MTEB-format result JSON per task."""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path
from typing import Any

from harness.reporting.data import EXACT_LABEL, ReportData
from harness.scoring.metrics import parse_measure
from harness.scoring.records import BeirSource, RunRecord, slug

# Our dataset names (or BEIR folder names) -> MTEB task names, for results that sit next to MTEB's.
MTEB_TASKS = {
    "scifact": "SciFact", "nfcorpus": "NFCorpus", "arguana": "ArguAna", "fiqa": "FiQA2018",
    "trec-covid": "TRECCOVID", "quora": "QuoraRetrieval", "msmarco": "MSMARCO", "scidocs": "SCIDOCS",
    "nq": "NQ", "hotpotqa": "HotpotQA", "dbpedia-entity": "DBPedia", "fever": "FEVER",
    "climate-fever": "ClimateFEVER", "webis-touche2020": "Touche2020", "touche2020": "Touche2020",
}
FLAT_FIELDS = ["dataset", "encoder", "model", "metric", "value", "ci_low", "ci_high", "n_queries", "control",
               "delta", "delta_ci_low", "delta_ci_high", "mde", "p_t_test", "p_randomization", "p_holm", "verdict",
               "record"]


def flat_rows(data: ReportData) -> list[dict[str, Any]]:
    """One row per dataset x encoder x metric, with the comparison against the control where there is one."""
    rows = []
    c = data.comparison
    for run in data.runs:
        for metric, value in run.record.metrics.items():
            low, high = data.cis[(run.dataset, run.label, metric)]
            m = c.find(run.dataset, metric, run.label) if c else None
            rows.append({
                "dataset": run.dataset, "encoder": run.label, "model": _model(run.record),
                "metric": metric, "value": value, "ci_low": low, "ci_high": high,
                "n_queries": len(run.per_query.get(metric, {})),
                "control": m.control if m else None, "delta": m.stats.delta if m else None,
                "delta_ci_low": m.stats.delta_ci[0] if m else None, "delta_ci_high": m.stats.delta_ci[1] if m else None,
                "mde": m.stats.mde if m else None,
                "p_t_test": m.stats.p_t_test if m else None, "p_randomization": m.stats.p_randomization if m else None,
                "p_holm": m.p_holm[c.test] if m and c else None,
                "verdict": m.verdict(c.alpha, c.test) if m and c else None, "record": run.where,
            })
    return rows


INDEX_FIELDS = ["dataset", "embeddings", "setting", "backend", "backend_version", "kind", "build_settings",
                "search_settings", "build_s", "from_cache", "train_rows", "bytes_per_vector", "resident_mb",
                "queries_per_s", "search_p50_ms", "search_p99_ms", "ann_recall_at_10", "ann_recall_at_100",
                "ann_recall_at_top_k", "top_k", "metric", "exact", "value", "delta", "delta_ci_low", "delta_ci_high",
                "p", "test", "margin", "lower_bound", "noninferior", "record"]


def index_rows(data: ReportData) -> list[dict[str, Any]]:
    """One row per index setting x metric (exact search's own row per metric first in each group): what the
    report's "Approximate index" table shows, unrounded."""
    rows: list[dict[str, Any]] = []
    for group in data.indexes:
        common = {"dataset": group.dataset, "embeddings": group.title}
        for metric in group.metrics:
            latency = group.exact.search_latency
            rows.append({**common, "setting": EXACT_LABEL, "queries_per_s": group.exact.queries_per_s,
                         "search_p50_ms": latency.p50 if latency else None,
                         "search_p99_ms": latency.p99 if latency else None,
                         "ann_recall_at_10": 1.0, "ann_recall_at_100": 1.0, "ann_recall_at_top_k": 1.0,
                         "metric": metric, "exact": group.exact_value(metric), "value": group.exact_value(metric),
                         "record": group.exact_run.where if group.exact_run else None})
        for s in group.settings:
            info, record = s.info, s.run.record
            recall = {a.k: a.mean for a in info.ann_recall}
            setting = {**common, "setting": s.label, "backend": info.backend, "backend_version": info.backend_version,
                       "kind": info.kind, "build_settings": json.dumps(info.build, sort_keys=True),
                       "search_settings": json.dumps(info.search, sort_keys=True), "build_s": info.build_s,
                       "from_cache": info.from_cache, "train_rows": info.train_rows,
                       "bytes_per_vector": info.bytes_per_vector, "resident_mb": info.resident_mb,
                       "queries_per_s": info.queries_per_s, "search_p50_ms": info.search_latency.p50,
                       "search_p99_ms": info.search_latency.p99, "ann_recall_at_10": recall.get(10),
                       "ann_recall_at_100": recall.get(100), "ann_recall_at_top_k": recall.get(record.top_k),
                       "top_k": record.top_k, "record": s.run.where}
            for metric in group.metrics:
                v = s.versus(metric)
                rows.append({**setting, "metric": metric, "value": record.metrics.get(metric),
                             **({} if v is None else {
                                 "exact": v.exact, "delta": v.delta, "delta_ci_low": v.delta_ci[0],
                                 "delta_ci_high": v.delta_ci[1], "p": v.p, "test": v.test, "margin": v.margin,
                                 "lower_bound": v.lower, "noninferior": v.noninferior})})
    return [{f: row.get(f) for f in INDEX_FIELDS} for row in rows]


def _model(record: RunRecord) -> str:
    """The model behind a record, or for an external run its run file."""
    if record.encoder is not None:
        return record.encoder.model
    return f"run file {Path(record.source.path).name}" if record.source else ""


def to_csv(rows: list[dict[str, Any]], fields: list[str] = FLAT_FIELDS) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: ("" if v is None else v) for k, v in row.items()} for row in rows)
    return buffer.getvalue()


TEX_ESCAPES = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
               "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
               "<": r"\textless{}", ">": r"\textgreater{}", "|": r"\textbar{}"}


def _tex(text: str) -> str:
    """A name as LaTeX text: every special character escaped (a backslash would start a command, ``\\input``
    among them), line breaks (a blank line ends the table cell) as spaces."""
    return re.sub(r"[\\&%$#_{}~^<>|]", lambda m: TEX_ESCAPES[m[0]], " ".join(text.splitlines()))


def to_latex(data: ReportData) -> str:
    """A booktabs table: rows dataset x encoder, columns metrics; arrows mark significant differences."""
    metrics = list(dict.fromkeys(m for r in data.runs for m in r.record.metrics))
    c = data.comparison
    lines = [r"% needs \usepackage{booktabs}",
             r"\begin{table}[t]", r"\centering", r"\begin{tabular}{ll" + "r" * len(metrics) + "}", r"\toprule",
             "Dataset & Encoder & " + " & ".join(_tex(m) for m in metrics) + r" \\", r"\midrule"]
    previous = None
    for run in data.runs:
        if previous is not None and run.dataset != previous:
            lines.append(r"\midrule")
        cells = []
        for metric in metrics:
            value = run.record.metrics.get(metric)
            m = c.find(run.dataset, metric, run.label) if c else None
            verdict = m.verdict(c.alpha, c.test) if m and c else ""
            mark = {"better": r"$^{\uparrow}$", "worse": r"$^{\downarrow}$"}.get(verdict, "")
            cells.append("--" if value is None else f"{value:.4f}{mark}")
        name = _tex(run.dataset) if run.dataset != previous else ""
        lines.append(f"{name} & {_tex(run.label)} & " + " & ".join(cells) + r" \\")
        previous = run.dataset
    test = f"paired {c.test} test, Holm-adjusted, $\\alpha={c.alpha}$" if c else "no comparison"
    lines += [r"\bottomrule", r"\end{tabular}",
              r"\caption{Retrieval quality (mean over all judged queries). $\uparrow$/$\downarrow$: significantly "
              rf"higher/lower than the first encoder of the dataset ({test}).}}",
              r"\label{tab:retrieval}", r"\end{table}"]
    return "\n".join(lines) + "\n"


def mteb_key(metric: str, top_k: int) -> str | None:
    """Our metric name -> MTEB's score key (MAP or nDCG without a cut-off is over the top_k retrieved); None for a
    measure MTEB does not report (Judged@k, Rprec, Bpref, infAP, Success@k)."""
    measure = parse_measure(metric)
    family = {"nDCG": "ndcg", "MRR": "mrr", "Recall": "recall", "P": "precision", "MAP": "map"}.get(measure.kind)
    return f"{family}_at_{measure.cutoff or top_k}" if family else None


def mteb_results(data: ReportData) -> dict[str, dict[str, Any]]:
    """'<encoder>/<Task>.json' -> an MTEB TaskResult-shaped dict (scores are fractions, as MTEB stores them)."""
    out = {}
    for run in data.runs:
        source = run.record.dataset.source
        beir = source if isinstance(source, BeirSource) else None
        folder = Path(beir.path).name.lower() if beir is not None else ""
        task = MTEB_TASKS.get(run.dataset.lower()) or MTEB_TASKS.get(folder) or run.dataset
        keys = {m: mteb_key(m, run.record.top_k) for m in run.record.metrics}
        scores = {key: run.record.metrics[m] for m, key in keys.items() if key}
        main = scores.get("ndcg_at_10", next(iter(scores.values()), None))
        performance = run.record.performance
        out[f"{slug(run.label)}/{slug(task)}.json"] = {
            "dataset_revision": run.record.dataset.fingerprint,
            "task_name": task,
            "mteb_version": None,
            "scores": {beir.split if beir is not None else "test": [
                {**scores, "main_score": main, "hf_subset": "default", "languages": ["eng-Latn"]}]},
            "evaluation_time": performance.corpus_encode_s + performance.search_s if performance else None,
            "kg_co2_emissions": None,
        }
    return out


def write_exports(data: ReportData, folder: Path) -> list[Path]:
    rows = flat_rows(data)
    files = {"results.csv": to_csv(rows), "results.json": json.dumps(rows, indent=1) + "\n",
             "results.tex": to_latex(data)}
    if data.indexes:
        indexed = index_rows(data)
        files.update({"index.csv": to_csv(indexed, INDEX_FIELDS), "index.json": json.dumps(indexed, indent=1) + "\n"})
    if data.comparison:
        files["comparison.json"] = json.dumps(data.comparison.to_dict(), indent=1) + "\n"
    files.update({f"mteb/{name}": json.dumps(result, indent=2) + "\n" for name, result in mteb_results(data).items()})
    written = []
    for name, text in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written
