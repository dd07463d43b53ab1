"""`r2r data`: the named sets behind `--dataset NAME` — list them, add local copies, fetch them, print paths.

    r2r data list [--verify]
    r2r data add dl19 bm25_top100.json qrels.txt        # local copies, checked against the table's SHA-256
    r2r data add mybeir path/to/beir_folder --beir      # your own BEIR folder as a named set
    r2r data fetch dl20 [--mirror URL]                  # download (resumable), keep only verified bytes
    r2r data path dl19 [qrels.txt | qrels]
"""

from __future__ import annotations

import argparse
import os
import sys

from r2r_jax.cli_types import HelpFormatter, add_renamed, positive_float
from r2r_jax.data.datasets import (
    BEIR_FILES,
    DATA_ENV,
    KNOWN_SETS,
    DatasetError,
    add_known,
    check_name,
    data_dir,
    dataset_file,
    file_states,
    how_to_get,
    missing_set,
    read_manifest,
    unknown_set,
    user_sets,
)
from r2r_jax.data.records import RecordError
from r2r_jax.retrieval.beir import add_beir
from r2r_jax.retrieval.fetch import FetchError, fetch_set

EXAMPLE = "r2r data fetch dl19"
EXAMPLES = {  # each action's help ends with its own
    "list": "r2r data list --verify",
    "add": "r2r data add mybeir path/to/beir_folder --beir",
    "fetch": EXAMPLE,
    "path": "r2r data path dl19 qrels",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", required=True, metavar="{list,add,fetch,path}")

    def action(name: str, help: str) -> argparse.ArgumentParser:
        return actions.add_parser(name, help=help, description=help, formatter_class=HelpFormatter,
                                  epilog=f"example:\n  {EXAMPLES[name]}")

    ls = action("list", "each set, its files and whether they are present and verified")
    ls.add_argument("--verify", action="store_true", help="also rehash your own sets' files (known sets always are)")
    add = action("add", "copy local files (or a BEIR folder with --beir) in as set NAME")
    add.add_argument("name", metavar="NAME", help=f"the set's name: a known set ({', '.join(KNOWN_SETS)}) or yours")
    add.add_argument("files", metavar="FILE", nargs="+",
                     help="files of a known set, matched by name or SHA-256; with --beir one BEIR folder")
    add.add_argument("--beir", action="store_true",
                     help="FILE is a BEIR folder (corpus.jsonl, queries.jsonl, qrels/test.tsv): add it as set NAME")
    add.add_argument("--overwrite", action="store_true", help="with --beir: replace a set of that name")
    fetch = action("fetch", "download a known set's files (resumable; SHA-256 checked)")
    fetch.add_argument("name", metavar="NAME", help=f"a known set: {', '.join(KNOWN_SETS)}")
    add_renamed(fetch, "--mirror", "--url-base", metavar="URL",
                help="a mirror laid out like the data directory: files come from URL/NAME/FILE")
    fetch.add_argument("--timeout", type=positive_float, default=60.0, metavar="SECONDS",
                       help="seconds per connection")
    path = action("path", "print the folder of set NAME, or the path of one of its files")
    path.add_argument("name", metavar="NAME", help="a known set or one you added")
    path.add_argument("file", metavar="FILE", nargs="?",
                      help="a file name (qrels.txt) or what it holds (candidates, qrels, teacher, corpus, queries)")


def _list(verify: bool) -> None:
    source = f"${DATA_ENV}" if os.environ.get(DATA_ENV) else f"default; set ${DATA_ENV} to move it"
    print(f"data directory: {data_dir()} ({source})")
    for name in [*KNOWN_SETS, *user_sets()]:
        if name in KNOWN_SETS:
            about = KNOWN_SETS[name].description
        else:
            m = read_manifest(name) or {}
            about = (f"your {str(m.get('format', '?')).upper()} folder ({m.get('judged_queries')} judged queries, "
                     f"{m.get('passages')} passages), from {m.get('source')}")
        print(f"\n{name}: {about}")
        states = file_states(name, verify)
        width = max(len(f) for f, _, _ in states) if states else 0
        for file, size, state in states:
            print(f"  {file:<{width}}  {size if size is None else f'{size:,} B':>14}  {state}")
        if name in KNOWN_SETS and any(s != "verified" for _, _, s in states):
            print(f"  to get it: {how_to_get(name)}")


def _path(name: str, file: str | None) -> str:
    check_name(name)
    folder = data_dir() / name
    if file is None:
        if name in KNOWN_SETS and not folder.is_dir():
            raise missing_set(name)
        if name not in KNOWN_SETS and read_manifest(name) is None:
            raise unknown_set(name)
        return str(folder)
    if name in KNOWN_SETS:
        entry = next((f for f in KNOWN_SETS[name].files if file in (f.name, f.role)), None)
        if entry is None:
            raise DatasetError(f"dataset {name} has no file {file!r} (it holds "
                               f"{', '.join(f.name for f in KNOWN_SETS[name].files)})")
        return str(dataset_file(name, entry.role))
    role = next((r for r, rel in BEIR_FILES.items() if file in (r, rel)), file)
    return str(dataset_file(name, role))


def run(args: argparse.Namespace) -> int:
    try:
        if args.action == "list":
            _list(args.verify)
        elif args.action == "path":
            print(_path(args.name, args.file))
        elif args.action == "fetch":
            fetch_set(args.name, args.mirror, args.timeout)
            print(f"{args.name}: complete in {data_dir() / args.name}")
        elif args.beir:
            if len(args.files) != 1:
                raise DatasetError("--beir takes one FOLDER")
            m = add_beir(args.name, args.files[0], args.overwrite)
            print(f"added {args.name}: {m['queries']} queries ({m['judged_queries']} judged), {m['passages']} "
                  f"passages, qrels {', '.join(r for r in m['files'] if r.startswith('qrels/'))} -> "
                  f"{data_dir() / args.name}")
        else:
            check_name(args.name)
            if args.name not in KNOWN_SETS:
                raise DatasetError(f"{args.name} is not a known set ({', '.join(KNOWN_SETS)}); add your own "
                                   f"BEIR folder with r2r data add {args.name} FOLDER --beir")
            for source, target, copied in add_known(args.name, args.files):
                print(f"{target}: {'added from ' + str(source) if copied else 'already present'}, SHA-256 verified")
    except RecordError as e:  # a missing, unknown or mismatched set or file, or a BEIR file that does not parse
        print(f"r2r data: error: {e}", file=sys.stderr)
        return 2
    except FetchError as e:
        print(f"r2r data: error: {e}", file=sys.stderr)
        return 1
    return 0
