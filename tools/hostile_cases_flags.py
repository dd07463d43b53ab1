"""Sweep cases: options out of range or at odds, and outputs that cannot or must not be written.

Each case names what its error line should name (the flag, or the two flags of an output that is an input).
Every case folder holds the good text files, checked unchanged afterwards, so an output written over one of
them shows as BAD whatever the exit code."""

from __future__ import annotations

from pathlib import Path

from hostile_case import DIR, Case
from hostile_cases import RUN, TINY, goods

EVAL = ["evaluate", "--run", "run.trec", "--qrels", "qrels.txt"]
RERANK = ["rerank", "--checkpoint", RUN, "--candidates", "candidates.jsonl", "--output", "out.trec"]
RERANK_RUN = ["rerank", "--checkpoint", RUN, "--run", "run.trec", "--corpus", "corpus.jsonl", "--queries",
              "queries.tsv", "--output", "out.trec"]
RETRIEVE = ["retrieve", "--queries", "queries.tsv", "--corpus", "corpus.jsonl", "--output", "out.jsonl",
            "--no-progress"]
MINE = ["mine-negatives", "--teacher", "teacher.jsonl", "--output", "out.jsonl", "--no-progress"]
TEACH = ["teach", "--candidates", "candidates.jsonl", "--output", "out.jsonl", "--teacher-model", "gpt-4o",
         "--dry-run"]
TUNE = ["tune-fusion", "--checkpoint", "student", "--student-run", "run.trec", "--candidates", "candidates.jsonl",
        "--qrels", "qrels.txt"]
REASONS = ["evaluate-reasons", "--explanations", "explanations.jsonl", "--teacher", "teacher.jsonl", "--output",
           "out.json"]
REASONS_CKPT = ["evaluate-reasons", "--checkpoint", RUN, "--teacher", "teacher.jsonl", "--output", "out.json"]
IMPORT = ["import-teacher", "--input", "release.jsonl", "--format", "r2r", "--output", "out.jsonl"]
TRAIN = ["train", "--data.train-path=teacher.jsonl", *TINY]
COMPILE = ["compile", "--config", "config.yaml", "--topology", "h100:1", "--skip-flops", "--skip-score"]
EXPORT = ["export", "--checkpoint", RUN, "--format", "seq-cls", "--output-dir", "out"]
PARITY = ["check-parity", "--model", "{F}/export"]


def C(id: str, argv: list[str], *names: str, files: dict | None = None, **kw) -> Case:  # noqa: N802 - a table row
    return Case(id, argv, {**goods(), **(files or {})}, names=names, kind=kw.pop("kind", "option"), **kw)


def _swap(argv: list[str], flag: str, value: str) -> list[str]:
    """argv with the value after `flag` replaced (or flag=value for a config flag)."""
    out = list(argv)
    for i, a in enumerate(out):
        if a == flag:
            out[i + 1] = value
            return out
        if a.startswith(flag + "="):
            out[i] = f"{flag}={value}"
            return out
    return out + [flag, value]


def numbers() -> list[Case]:
    """Numbers a command cannot use: each named in the one line, before anything loads."""
    rows = [
        (EVAL, "--rel-level", ["0", "-1", "x", "1.5"]), (EVAL, "--permutations", ["-1", "1e3", "many"]),
        (EVAL, "--seed", ["-4", "x"]), (EVAL, "--min-query-value", ["nan", "-inf", "x"]),
        (RERANK, "--depth", ["0", "-1", "ten"]), (RERANK, "--batch-size", ["0", "-8", "2.5"]),
        (RERANK, "--max-new-tokens", ["0"]), (RERANK, "--shard-size", ["0"]), (RERANK, "--temperature", ["nan", "-1"]),
        (RERANK, "--fusion-weight", ["1.5", "-0.1", "nan"]), (RERANK, "--max-prompt-len", ["0", "-5"]),
        (RERANK, "--max-queries", ["0"]), (RERANK, "--seed", ["-1"]), (RERANK, "--mesh.tensor", ["0", "x"]),
        (RERANK, "--explain-top", ["-2", "two"]),
        (RETRIEVE, "--top-k", ["0", "-5", "1e2"]), (RETRIEVE, "--k1", ["-1", "nan", "inf"]),
        (RETRIEVE, "--b", ["2", "-0.5", "nan"]), (RETRIEVE, "--threads", ["0"]),
        (MINE, "--count", ["0", "-1"]), (MINE, "--skip", ["-1"]), (MINE, "--spread", ["0"]), (MINE, "--b", ["7"]),
        (TEACH, "--top-k", ["0"]), (TEACH, "--window", ["0"]), (TEACH, "--step", ["0"]), (TEACH, "--top-m", ["-1"]),
        (TEACH, "--max-words", ["0"]), (TEACH, "--max-tokens", ["0"]), (TEACH, "--max-reasks", ["-1"]),
        (TEACH, "--price-in", ["-1", "nan"]), (TEACH, "--batch-discount", ["2"]), (TEACH, "--max-queries", ["0"]),
        (TEACH, "--backoff-max", ["inf"]), (TEACH, "--poll-interval", ["0"]), (TEACH, "--num-pairs", ["-3"]),
        (REASONS, "--max-queries", ["0"]), (REASONS_CKPT, "--batch-size", ["0"]),
        (REASONS_CKPT, "--max-new-tokens", ["-1"]), (REASONS_CKPT, "--mesh.data", ["0"]),
        (IMPORT, "--show", ["-1", "x"]),
        (PARITY, "--tol", ["0", "-1", "nan"]), (PARITY, "--batches", ["0"]), (PARITY, "--seq-len", ["0"]),
        (PARITY, "--texts", ["-1"]), (PARITY + ["--checkpoint", RUN], "--max-queries", ["0"]),
        (COMPILE, "--score-batch", ["-1"]),
        (EXPORT, "--max-shard-size", ["5XB", "0", "-1GB", "lots"]),
        (TRAIN, "--steps", ["0", "-1", "ten", "1e9999"]), (TRAIN, "--batch-size", ["0", "-8"]),
        (TRAIN, "--optim.learning-rate", ["-1", "nan", "inf", "fast"]), (TRAIN, "--optim.warmup-steps", ["-1"]),
        (TRAIN, "--lora.rank", ["0", "-4"]), (TRAIN, "--model.head-dim", ["0"]),
        (TRAIN, "--model.num-key-value-heads", ["3"]), (TRAIN, "--data.max-target-len", ["0"]),
        (TRAIN, "--model.rms-norm-eps", ["-1", "nan"]), (TRAIN, "--keep-checkpoints", ["-1"]),
        (TRAIN, "--save-every", ["0"]), (TRAIN, "--log-every", ["-1"]), (TRAIN, "--micro-batches", ["0", "3"]),
        (TRAIN, "--data.hard-negatives", ["-2"]), (TRAIN, "--loss.temperature", ["0", "-1"]),
        (TRAIN, "--model.dtype", ["float99", "int8"]), (TRAIN, "--model.rope-scaling.factor", ["0", "-2"]),
    ]
    cases = []
    for argv, flag, values in rows:
        for value in values:
            field = flag.lstrip("-").replace("-", "_")
            names = (flag, field) if "." in flag or argv[0] == "train" else (flag,)
            cases.append(C(f"{argv[0]}/{flag}={value}", _swap(argv, flag, value), *names, kind="number"))
    return cases


def choices() -> list[Case]:
    """Flags at odds with each other, unknown spellings, wrong choices, missing requirements."""
    return [
        C("rerank/--candidates+--run", RERANK + ["--run", "run.trec"], "--candidates", "--run"),
        C("rerank/--run-without-corpus", ["rerank", "--checkpoint", RUN, "--run", "run.trec", "--output", "out.trec"],
          "--run", "--corpus"),
        C("rerank/no-candidates", ["rerank", "--checkpoint", RUN, "--output", "out.trec"], "--candidates"),
        C("rerank/--checkpoint+--model", RERANK + ["--model", "{F}/export"], "--checkpoint", "--model"),
        C("rerank/--fusion-weight-alone", RERANK + ["--fusion-weight", "0.3"], "--fusion-weight"),
        C("rerank/--student-only+--fusion", RERANK + ["--student-only", "--fusion", "rrf"], "--fusion",
          "--student-only"),
        C("rerank/--fusion=bogus", RERANK + ["--fusion", "bogus"], "--fusion"),
        C("rerank/--explain-ranks=10-1", RERANK + ["--explain-ranks", "10-1"], "--explain-ranks"),
        C("rerank/--explain-ranks=abc", RERANK + ["--explain-ranks", "abc"], "--explain-ranks"),
        C("rerank/--explain-ranks=0-2", RERANK + ["--explain-ranks", "0-2"], "--explain-ranks"),
        C("rerank/--explain-ranks-below-depth", RERANK + ["--explain-ranks", "1-3", "--depth", "2"],
          "--explain-ranks", "--depth"),
        C("rerank/--explain-top+--explain-ranks", RERANK + ["--explain-top", "2", "--explain-ranks", "1-2"],
          "--explain-top", "--explain-ranks"),
        C("rerank/--explain-comparisons=bogus", RERANK + ["--explain-comparisons", "bogus"], "--explain-comparisons"),
        C("rerank/--tag-with-space", RERANK + ["--tag", "my run"], "--tag"),
        C("rerank/--tag-empty", RERANK + ["--tag", ""], "--tag"),
        C("rerank/--dtype=float16", RERANK + ["--dtype", "float16"], "--dtype"),
        C("rerank/--base-model-with--model", ["rerank", "--model", "{F}/export", "--base-model", "{F}/export",
                                              "--candidates", "candidates.jsonl", "--output", "out.trec"],
          "--base-model"),
        C("rerank/--dataset-unknown", ["rerank", "--checkpoint", RUN, "--dataset", "nosuch", "--output", "out.trec"],
          "nosuch", "--dataset", env={"R2R_DATA": "data"}),
        C("rerank/--dataset-not-fetched", ["rerank", "--checkpoint", RUN, "--dataset", "dl19", "--output",
                                           "out.trec"], "dl19", env={"R2R_DATA": "data"}),
        C("rerank/--prompt-template-no-passage", RERANK + ["--prompt-template", "{query} only"], "--prompt-template"),
        C("rerank/--prompt-template-brace", RERANK + ["--prompt-template", "{query} {passage"], "--prompt-template"),
        C("rerank/--prompt-template-positional", RERANK + ["--prompt-template", "{} {query} {passage}"],
          "--prompt-template"),
        C("rerank/--tokenizer-file", RERANK + ["--tokenizer", "qrels.txt"], "--tokenizer", "qrels.txt"),
        C("rerank/unknown-flag", RERANK + ["--explain", "3"], "--explain"),
        C("evaluate/--metrics=bogus", EVAL + ["--metrics", "bogus@10"], "--metrics", "bogus"),
        C("evaluate/--metrics=ndcg@0", EVAL + ["--metrics", "ndcg@0"], "--metrics", "ndcg@0"),
        C("evaluate/--metrics=empty", EVAL + ["--metrics", ""], "--metrics"),
        C("evaluate/--metrics=ndcg@x", EVAL + ["--metrics", "ndcg@x"], "--metrics", "ndcg@x"),
        C("evaluate/--metrics=commas", EVAL + ["--metrics", ",,"], "--metrics"),
        C("evaluate/--qrels+--dataset", EVAL + ["--dataset", "dl19"], "--qrels", "--dataset"),
        C("evaluate/--dataset-unknown", ["evaluate", "--run", "run.trec", "--dataset", "nosuch"], "nosuch",
          env={"R2R_DATA": "data"}),
        C("evaluate/--min-query-value-above-all", EVAL + ["--min-query-value", "5"], "--min-query-value",
          expect="either"),
        C("evaluate/disjoint-qids", ["evaluate", "--run", "run.trec", "--qrels", "other_qrels.txt"], "qrels", "qid",
          files={"other_qrels.txt": "zz 0 d 1\n"}),
        C("retrieve/--stemmer=klingon", RETRIEVE + ["--stemmer", "klingon"], "--stemmer", "klingon"),
        C("retrieve/--prebuilt-with-bm25s", RETRIEVE + ["--prebuilt", "msmarco-v1-passage"], "--prebuilt"),
        C("retrieve/--backend=bogus", RETRIEVE + ["--backend", "bogus"], "--backend"),
        C("retrieve/no-corpus", ["retrieve", "--queries", "queries.tsv", "--output", "out.jsonl"], "--corpus"),
        C("retrieve/no-queries", ["retrieve", "--corpus", "corpus.jsonl", "--output", "out.jsonl"], "--queries"),
        C("retrieve/--index-is-a-file", RETRIEVE + ["--index", "qrels.txt"], "--index", "qrels.txt"),
        C("retrieve/--index-foreign-folder", RETRIEVE + ["--index", "mine"], "--index", "mine",
          files={"mine": DIR, "mine/notes.txt": "my notes\n"}),
        C("retrieve/--index-is-corpus", RETRIEVE + ["--index", "corpus.jsonl"], "--index", "corpus.jsonl"),
        C("retrieve/--dataset-unknown", ["retrieve", "--dataset", "nosuch", "--output", "out.jsonl"], "nosuch",
          env={"R2R_DATA": "data"}),
        C("mine-negatives/--spread-below-count", MINE + ["--count", "3", "--spread", "2"], "--spread", "--count"),
        C("mine-negatives/one-record", ["mine-negatives", "--teacher", "one.jsonl", "--output", "out.jsonl"],
          "one.jsonl", files={"one.jsonl": lambda p, f: p.write_text((f / "teacher.jsonl").read_text()
                                                                     .splitlines()[0] + "\n")}),
        C("mine-negatives/--stemmer=bogus", MINE + ["--stemmer", "bogus"], "--stemmer", "bogus"),
        C("teach/--prompt-version=nosuch", TEACH + ["--prompt-version", "nosuch"], "--prompt-version", "nosuch"),
        C("teach/--prompt-version=traversal", TEACH + ["--prompt-version", "../../etc/passwd"], "--prompt-version"),
        C("teach/--step-above-window", TEACH + ["--window", "4", "--step", "9"], "--step", "--window"),
        C("teach/--top-m-above-top-k", TEACH + ["--top-k", "3", "--top-m", "9"], "--top-m", "--top-k",
          expect="either"),
        C("teach/--mode=bogus", TEACH + ["--mode", "bogus"], "--mode"),
        C("teach/no-api-key", TEACH[:-1] + ["--api-key-env", "R2R_NO_SUCH_KEY"],
          "R2R_NO_SUCH_KEY"),
        C("teach/--base-url-not-a-url", TEACH[:-1] + ["--base-url", "not a url", "--max-retries", "0"], "--base-url",
          "not a url", env={"OPENAI_API_KEY": "sk-test"}, expect="either", leaves=("out.jsonl*",)),
        C("teach/--preset+--top-k", TEACH + ["--preset", "r2r-authors", "--top-k", "9"], "--preset", "--top-k",
          expect="either"),
        C("tune-fusion/--checkpoint-missing", _swap(TUNE, "--checkpoint", "nowhere"), "nowhere", "--checkpoint"),
        C("tune-fusion/--checkpoint-is-a-file", _swap(TUNE, "--checkpoint", "qrels.txt"), "qrels.txt",
          "--checkpoint"),
        C("tune-fusion/--metric=map", TUNE + ["--metric", "map"], "--metric"),
        C("tune-fusion/default-exists", TUNE, "rerank_default.json", "--overwrite",
          files={"student": DIR, "student/rerank_default.json": '{"fusion": {"method": "student"}}\n'}),
        C("tune-fusion/candidates-not-in-run", _swap(TUNE, "--student-run", "other.trec"), "--student-run",
          files={"student": DIR, "other.trec": "zz Q0 d 1 1.0 t\n"}),
        C("import-teacher/--format-missing", ["import-teacher", "--input", "release.jsonl", "--output", "out.jsonl"],
          "--format"),
        C("import-teacher/wrong-format", _swap(IMPORT, "--format", "rank_llm"), "release.jsonl", "--input"),
        C("import-teacher/--input+--dataset", IMPORT + ["--dataset", "r2r-release"], "--input", "--dataset"),
        C("import-teacher/--dataset-not-fetched", ["import-teacher", "--dataset", "r2r-release", "--output",
                                                   "out.jsonl"], "r2r-release", env={"R2R_DATA": "data"}),
        C("import-teacher/--strict-with-rejects", ["import-teacher", "--input", "mixed.jsonl", "--format", "r2r",
                                                   "--output", "out.jsonl", "--strict"], "--strict", code=1,
          files={"mixed.jsonl": lambda p, f: p.write_text((f / "release.jsonl").read_text() + '{"qid": 1}\n')}),
        C("evaluate-reasons/--kinds=bogus", REASONS + ["--kinds", "bogus"], "--kinds", "bogus"),
        C("evaluate-reasons/--kinds=empty", REASONS + ["--kinds", ""], "--kinds"),
        C("evaluate-reasons/--checkpoint-no-teacher", ["evaluate-reasons", "--checkpoint", RUN, "--output",
                                                       "out.json"], "--teacher"),
        C("evaluate-reasons/--checkpoint+--explanations", REASONS + ["--checkpoint", RUN], "--checkpoint",
          "--explanations"),
        C("export/--format=bogus", _swap(EXPORT, "--format", "gguf"), "--format"),
        C("export/--dtype=float16", EXPORT + ["--dtype", "float16"], "--dtype"),
        C("export/--format-peft-random-base", _swap(EXPORT, "--format", "peft"), "peft", "random-init"),
        C("export/--base-model-missing", EXPORT + ["--base-model", "nowhere"], "nowhere", "--base-model"),
        C("export/--base-model-wrong", EXPORT + ["--base-model", "{F}/export"], "--base-model", "base"),
        C("base/--dtype=float16", ["base", "tiny.gguf", "--dtype", "float16", "--output-dir", "out"], "--dtype"),
        C("base/unknown-name", ["base", "llama-70b", "--output-dir", "out"], "llama-70b"),
        C("compile/--topology=v5p", _swap(COMPILE, "--topology", "v5p"), "--topology"),
        C("compile/--topology=h100:0", _swap(COMPILE, "--topology", "h100:0"), "--topology"),
        C("compile/--topology=h100:2x2", _swap(COMPILE, "--topology", "h100:2x2"), "--topology"),
        C("compile/--topology=empty", _swap(COMPILE, "--topology", ""), "--topology"),
        C("compile/--set-no-equals", COMPILE + ["--set", "batch_size"], "--set", "batch_size"),
        C("compile/--set=steps=abc", COMPILE + ["--set", "steps=abc"], "--set", "steps"),
        C("compile/--set=model.dtype=float99", COMPILE + ["--set", "model.dtype=float99"], "model.dtype"),
        C("compile/--set=empty", COMPILE + ["--set", ""], "--set"),
        C("train/unknown-flag", TRAIN + ["--stepz=3"], "--stepz"),
        C("train/positional", TRAIN + ["teacher.jsonl"], "teacher.jsonl"),
        C("train/--loss.reasons=bogus", TRAIN + ["--loss.reasons=bogus"], "--loss.reasons"),
        C("train/--lora.targets=bogus", TRAIN + ["--lora.targets=[bogus_proj]"], "lora.targets", "bogus_proj"),
        C("train/--lora.targets=not-a-list", TRAIN + ["--lora.targets=[q_proj"], "lora.targets"),
        C("train/--model.attention=bogus", TRAIN + ["--model.attention=bogus"], "model.attention"),
        C("train/--score-init-tokens-one", TRAIN + ['--score-init-tokens=[" yes"]'], "score_init_tokens",
          "score-init-tokens"),
        C("train/--base-model-missing", TRAIN + ["--base-model=nowhere"], "nowhere", "base_model", "base-model"),
        C("train/--base-model-is-a-file", TRAIN + ["--base-model=qrels.txt"], "qrels.txt", "base_model",
          "base-model"),
        C("train/--data.tokenizer-missing", _swap(TRAIN, "--data.tokenizer", "./no_tok"), "no_tok", "tokenizer"),
        C("train/--eval-every-without-dev", TRAIN + ["--eval-every=1"], "eval_every", "eval-every", "dev",
          expect="either", leaves=("out",)),
        C("demo/--steps=0", ["demo", "--steps=0", "--output-dir", "out"], "steps"),
        C("demo/unknown-flag", ["demo", "--bogus=1", "--output-dir", "out"], "--bogus"),
        C("demo/--output-dir-no-value", ["demo", "--output-dir"], "--output-dir"),
        C("data/unknown-action", ["data", "bogus"], "bogus", env={"R2R_DATA": "data"}),
        C("data/no-action", ["data"], "action", "{list,add,fetch,path}", env={"R2R_DATA": "data"}),
    ]


def outputs() -> list[Case]:
    """Outputs that are folders, lie under files, are inputs (directly, by a link, or as a derived path)."""
    cases = []
    folder_for_file = [
        ("rerank", RERANK, "--output"), ("evaluate", EVAL + ["--report", "out.json"], "--report"),
        ("evaluate", EVAL + ["--plot", "out.png"], "--plot"), ("retrieve", RETRIEVE, "--output"),
        ("retrieve", RETRIEVE + ["--trec", "out.trec"], "--trec"), ("mine-negatives", MINE, "--output"),
        ("teach", TEACH, "--output"), ("teach", TEACH + ["--report", "out.json"], "--report"),
        ("import-teacher", IMPORT, "--output"), ("import-teacher", IMPORT + ["--report", "out.json"], "--report"),
        ("evaluate-reasons", REASONS, "--output"), ("compile", COMPILE + ["--report", "out.json"], "--report"),
        ("rerank", RERANK + ["--explain-top", "1", "--explanations", "out.jsonl"], "--explanations"),
    ]
    for command, argv, flag in folder_for_file:
        cases.append(C(f"{command}/{flag}-is-a-folder", _swap(argv, flag, "a_folder"), flag, "a_folder",
                       files={"a_folder": DIR, "a_folder/keep.txt": "keep\n"}, kind="output"))
        cases.append(C(f"{command}/{flag}-under-a-file", _swap(argv, flag, "qrels.txt/out.x"), flag, "qrels.txt",
                       kind="output"))
    is_input = [
        ("evaluate", EVAL + ["--report", "run.trec"], ("--report", "--run")),
        ("evaluate", EVAL + ["--plot", "qrels.txt"], ("--plot", "--qrels")),
        ("evaluate", EVAL + ["--compare", "run_b.trec", "--report", "run_b.trec"], ("--report", "--compare")),
        ("evaluate", EVAL + ["--report", "out.json", "--plot", "out.json"], ("--report", "--plot")),
        ("retrieve", _swap(RETRIEVE, "--output", "corpus.jsonl"), ("--output", "--corpus")),
        ("retrieve", RETRIEVE + ["--trec", "queries.tsv"], ("--trec", "--queries")),
        ("retrieve", RETRIEVE + ["--trec", "out.jsonl"], ("--trec", "--output")),
        ("mine-negatives", _swap(MINE, "--output", "teacher.jsonl"), ("--output", "--teacher")),
        ("teach", _swap(TEACH, "--output", "candidates.jsonl"), ("--output", "--candidates")),
        ("teach", TEACH + ["--failures", "candidates.jsonl"], ("--failures", "--candidates")),
        ("teach", TEACH + ["--report", "out.jsonl"], ("--report", "--output")),
        ("rerank", RERANK + ["--explanations", "candidates.jsonl"], ("--explanations", "--candidates")),
        ("rerank", _swap(RERANK_RUN, "--output", "corpus.jsonl"), ("--output", "--corpus")),
        ("rerank", _swap(RERANK_RUN, "--output", "queries.tsv"), ("--output", "--queries")),
        ("rerank", _swap(RERANK_RUN, "--output", "run.trec"), ("--output", "--run")),
        ("evaluate-reasons", _swap(REASONS, "--output", "explanations.jsonl"), ("--output", "--explanations")),
        ("import-teacher", IMPORT + ["--report", "out.jsonl"], ("--report", "--output")),
        ("compile", COMPILE + ["--report", "config.yaml"], ("--report", "--config")),
        ("rerank", RERANK + ["--explain-top", "1", "--output", "candidates.jsonl"], ("--output", "--candidates")),
    ]
    for command, argv, flags in is_input:
        cases.append(C(f"{command}/{flags[0]}-is-{flags[1]}", argv, *flags, kind="output-is-input"))
    linked = [("evaluate", EVAL + ["--report", "link.json"], "run.trec"),
              ("rerank", _swap(RERANK, "--output", "link.trec"), "candidates.jsonl"),
              ("mine-negatives", _swap(MINE, "--output", "link.jsonl"), "teacher.jsonl"),
              ("retrieve", _swap(RETRIEVE, "--output", "link.jsonl"), "corpus.jsonl"),
              ("import-teacher", _swap(IMPORT, "--output", "link.jsonl"), "release.jsonl")]
    for command, argv, target in linked:
        link = next(a for a in argv if a.startswith("link."))
        cases.append(C(f"{command}/output-is-a-link-to-input", argv, target, link,
                       files={link: lambda p, f, t=target: p.symlink_to(t)}, kind="output-is-input"))
    derived = [
        ("rerank", ["rerank", "--checkpoint", RUN, "--candidates", "out.explanations.jsonl", "--output", "out.trec",
                    "--explain-ranks", "1-2"], "out.explanations.jsonl", "--explanations (default"),
        ("rerank", ["rerank", "--checkpoint", RUN, "--candidates", "out.trec.shards", "--output", "out.trec"],
         "out.trec.shards", "shard folder"),
        ("teach", ["teach", "--candidates", "out.jsonl.cache.sqlite", "--output", "out.jsonl", "--teacher-model", "m"],
         "out.jsonl.cache.sqlite", "--cache (default"),
        ("export", ["export", "--checkpoint", "run", "--format", "seq-cls", "--output-dir", "run/checkpoints/x"],
         "run", "overlaps"),
    ]
    for command, argv, victim, message in derived:
        files = {victim: "@candidates.jsonl"} if victim != "run" else {"run": "@tiny_run"}
        cases.append(C(f"{command}/derived-output-is-input:{victim}", argv, message, files=files,
                       kind="output-is-input"))
    cases += [
        C("export/--output-dir-is-the-run", _swap(EXPORT, "--checkpoint", "run")[:-1] + ["run"], "--output-dir",
          "run", files={"run": "@tiny_run"}, kind="output-is-input"),
        C("export/--output-dir-foreign-folder-overwrite", EXPORT + ["--overwrite"], "--output-dir", "r2r export",
          files={"out": DIR, "out/mine.txt": "my file\n"}, kind="output"),
        C("export/--output-dir-is-a-file", _swap(EXPORT, "--output-dir", "qrels.txt") + ["--overwrite"],
          "--output-dir", "qrels.txt", kind="output"),
        C("train/--output-dir-is-a-file", _swap(TRAIN, "--output-dir", "qrels.txt"), "qrels.txt", "output_dir",
          "output-dir", kind="output"),
        C("train/--output-dir-foreign-folder", TRAIN, "out", "output_dir", "output-dir",
          files={"out": DIR, "out/thesis.tex": "my thesis\n"}, kind="output"),
        C("train/--output-dir-holds-the-data", _swap(TRAIN, "--data.train-path", "out/teacher.jsonl"), "out",
          "output", files={"out": DIR, "out/teacher.jsonl": "@teacher.jsonl"}, kind="output-is-input"),
        C("demo/--output-dir-is-a-file", ["demo", "--output-dir", "qrels.txt", "--steps=1"], "qrels.txt",
          "output-dir", kind="output"),
        C("base/--output-dir-foreign-folder-overwrite", ["base", "tiny.gguf", "--output-dir", "out", "--overwrite"],
          "out", "r2r base", files={"tiny.gguf": _gguf, "out": DIR, "out/mine.txt": "mine\n"}, kind="output"),
        C("base/--output-dir-is-a-file", ["base", "tiny.gguf", "--output-dir", "qrels.txt"], "qrels.txt",
          files={"tiny.gguf": _gguf}, kind="output"),
        C("base/--output-dir-is-the-source", ["base", "tiny.gguf", "--output-dir", "tiny.gguf", "--overwrite"],
          "tiny.gguf", files={"tiny.gguf": _gguf}, kind="output-is-input"),
    ]
    return cases


def _gguf(path: Path, fixtures: Path) -> None:
    from r2r_jax.testing.gguf_files import write_gguf

    write_gguf(path)


def flag_cases() -> list[Case]:
    return numbers() + choices() + outputs()
