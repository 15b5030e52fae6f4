"""Import: every format and file type normalised exactly, the real HH sample, and a malformed corpus
whose first problem must be reported at the right file, line and field."""

from __future__ import annotations

import csv
import gzip
import json
from pathlib import Path

import pytest

from engine.data.importers import ImportFailed, ImportIssue, ImportResult, detect_format, load_examples
from storage.records import Example
from tests import malformed

FORMATS = Path(__file__).resolve().parent / "data" / "formats"
HH_SAMPLE = Path(__file__).resolve().parents[2] / "shared" / "data" / "hh-rlhf-harmless-test.jsonl.gz"


def user(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


def turn(role: str, text: str) -> dict:
    return {"role": role, "content": text}


def example(path: Path, line: int, prompt, chosen=None, rejected=None, *, role="seed", conv=False) -> Example:
    prompt = user(prompt) if isinstance(prompt, str) else prompt
    return Example(
        role=role,
        prompt=prompt,
        chosen=chosen,
        rejected=rejected,
        source_file=str(path),
        source_line=line,
        conversational=conv,
    )


def write(directory: Path, kind: str, rows: list[dict], stem: str = "data") -> Path:
    """The same rows as any supported file type."""
    if kind in ("dataset", "datasetdict", "datasetdict-one"):
        from datasets import Dataset, DatasetDict

        path, data = directory / stem, Dataset.from_list(rows)
        if kind == "datasetdict":
            data = DatasetDict({"test": data.select([0]), "train": data})
        elif kind == "datasetdict-one":
            data = DatasetDict({"prefs": data})
        data.save_to_disk(str(path))
        return path
    if kind == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        path = directory / f"{stem}.parquet"
        pq.write_table(pa.Table.from_pylist(rows), path)
        return path
    if kind == "csv":
        path = directory / f"{stem}.csv"
        with open(path, "w", newline="", encoding="utf-8") as fh:
            out = csv.DictWriter(fh, fieldnames=list(rows[0]))
            out.writeheader()
            out.writerows({k: json.dumps(v) if isinstance(v, list) else v for k, v in r.items()} for r in rows)
        return path
    text = {
        "jsonl": "".join(json.dumps(r) + "\n" for r in rows),
        "json": json.dumps(rows, indent=2),
        "json-data": json.dumps({"data": rows}),
        "jsonl-in-json": "".join(json.dumps(r) + "\n" for r in rows),
    }
    if kind == "jsonl.gz":
        path = directory / f"{stem}.jsonl.gz"
        path.write_bytes(gzip.compress(text["jsonl"].encode()))
        return path
    path = directory / f"{stem}.{'jsonl' if kind == 'jsonl' else 'json'}"
    path.write_text(text[kind], encoding="utf-8")
    return path


# ------------------------------------------------------------------------------------------------
# TRL standard, explicit prompt: every file type gives the same examples

STANDARD = [
    {"prompt": "What is 2+2?", "chosen": "4", "rejected": "5"},
    {"prompt": "Capital of France?", "chosen": " Paris.", "rejected": "Lyon.\n"},
    {"prompt": "Say hi,\nplease.", "chosen": "Hi!", "rejected": 'No, "never".'},
]


@pytest.mark.parametrize(
    "kind",
    [
        "jsonl",
        "jsonl.gz",
        "json",
        "json-data",
        "jsonl-in-json",
        "csv",
        "parquet",
        "dataset",
        "datasetdict",
        "datasetdict-one",
    ],
)
def test_trl_standard_explicit_every_file_type(tmp_path, kind):
    path = write(tmp_path, kind, STANDARD)
    result = load_examples(path, "seed")
    split = {"datasetdict": " (split 'train')", "datasetdict-one": " (split 'prefs')"}.get(kind, "")
    assert result.format == "trl-standard-explicit" + split
    assert result.rows_read == 3 and result.duplicates == [] and result.skipped == []
    assert result.examples == [
        example(path, 1, "What is 2+2?", "4", "5"),
        example(path, 2, "Capital of France?", "Paris.", "Lyon."),
        example(path, 3, "Say hi,\nplease.", "Hi!", 'No, "never".'),
    ]


def test_trl_standard_implicit_prompt_is_split_at_a_word_boundary(tmp_path):
    path = write(
        tmp_path,
        "jsonl",
        [
            {"chosen": "The sky is blue.", "rejected": "The sky is green."},
            {"chosen": "I like cats", "rejected": "I like cars"},
        ],
    )
    result = load_examples(path, "seed")
    assert result.format == "trl-standard-implicit"
    assert result.examples == [
        example(path, 1, "The sky is", "blue.", "green."),
        example(path, 2, "I like", "cats", "cars"),
    ]


CONV_EXPLICIT = [
    {
        "prompt": [turn("system", "Be terse."), turn("user", "Hi")],
        "chosen": [turn("assistant", "Hello.")],
        "rejected": [turn("assistant", "Go away.")],
    },
    {
        "prompt": [turn("user", "2+2?"), turn("assistant", "4"), turn("user", "And 3+3?")],
        "chosen": [turn("user", "2+2?"), turn("assistant", "4"), turn("user", "And 3+3?"), turn("assistant", "6")],
        "rejected": [turn("assistant", "7")],
    },
]


@pytest.mark.parametrize("kind", ["jsonl", "parquet", "csv"])
def test_trl_conversational_explicit(tmp_path, kind):
    path = write(tmp_path, kind, CONV_EXPLICIT)
    result = load_examples(path, "eval")
    assert result.format == "trl-conversational-explicit"
    assert result.examples == [
        example(path, 1, CONV_EXPLICIT[0]["prompt"], "Hello.", "Go away.", role="eval", conv=True),
        example(path, 2, CONV_EXPLICIT[1]["prompt"], "6", "7", role="eval", conv=True),
    ]


CONV_IMPLICIT = [
    {
        "chosen": [turn("user", "Hi"), turn("assistant", "Hello!")],
        "rejected": [turn("user", "Hi"), turn("assistant", "What?")],
    },
    {
        "chosen": [
            turn("system", "Pirate."),
            turn("user", "Name?"),
            turn("assistant", "Arr."),
            turn("user", "Ship?"),
            turn("assistant", "The Pearl."),
        ],
        "rejected": [
            turn("system", "Pirate."),
            turn("user", "Name?"),
            turn("assistant", "Arr."),
            turn("user", "Ship?"),
            turn("assistant", "A car."),
        ],
    },
]


@pytest.mark.parametrize("kind", ["jsonl", "dataset"])
def test_trl_conversational_implicit_shared_prefix_is_the_prompt(tmp_path, kind):
    path = write(tmp_path, kind, CONV_IMPLICIT)
    result = load_examples(path, "seed")
    assert result.format == "trl-conversational-implicit"
    assert result.examples == [
        example(path, 1, user("Hi"), "Hello!", "What?", conv=True),
        example(path, 2, CONV_IMPLICIT[1]["chosen"][:-1], "The Pearl.", "A car.", conv=True),
    ]


def test_hh_transcripts_split_at_the_last_assistant_turn():
    path = FORMATS / "hh_transcript.jsonl"
    result = load_examples(path, "seed")
    assert result.format == "hh-transcript"
    assert result.examples == [
        example(
            path,
            1,
            [turn("user", "Hi there"), turn("assistant", "Hello! How can I help?"), turn("user", "Tell me a joke.")],
            "Why did the chicken cross the road? To get to the other side.",
            "No.",
        ),
        example(path, 2, "What is the capital of France?\n\nBe brief.", "Paris.", "London."),
    ]


def test_ultrafeedback_binarized_parquet(tmp_path):
    rows = [
        {
            "prompt": "Hi",
            "prompt_id": "p1",
            "chosen": [turn("user", "Hi"), turn("assistant", "Hello!")],
            "rejected": [turn("user", "Hi"), turn("assistant", "Meh.")],
            "messages": [turn("user", "Hi"), turn("assistant", "Hello!")],
            "score_chosen": 9.0,
            "score_rejected": 3.5,
        }
    ]
    path = write(tmp_path, "parquet", rows)
    result = load_examples(path, "seed")
    assert result.format == "ultrafeedback-binarized"
    assert result.examples == [example(path, 1, "Hi", "Hello!", "Meh.", conv=True)]


def test_alpaca_json_joins_instruction_and_input():
    path = FORMATS / "alpaca.json"
    result = load_examples(path, "seed")
    assert result.format == "alpaca"
    assert result.examples == [
        example(
            path,
            1,
            "Summarise the text.\n\nThe cat sat on the mat all day.",
            "A cat spent the day on a mat.",
            "Dogs are loyal.",
        ),
        example(path, 2, "Give a synonym for happy.", "Joyful", "Sad"),
    ]


def test_answer1_answer2_choice_csv_every_spelling_of_the_choice():
    path = FORMATS / "answer_choice.csv"
    result = load_examples(path, "seed")
    assert result.format == "answer1-answer2-choice"
    assert result.examples == [
        example(path, 1, "What is 2+2?", "4", "5"),
        example(path, 2, "Name a colour.", "Blue, like the sky.", "Seven."),
        example(path, 3, "Say hi.", "Hi!", "Bye."),
        example(
            path,
            4,
            "Write a haiku\nabout rain.",
            "Soft rain on the roof,\nthe garden drinks in silence,\npuddles hold the sky.",
            "Rain rain rain.",
        ),
        example(path, 5, "Pick a fruit.", "An apple.", "A hammer."),
    ]


def test_autotrain_csv():
    path = FORMATS / "autotrain.csv"
    result = load_examples(path, "eval")
    assert result.format == "autotrain"
    assert result.examples == [
        example(path, 1, "Translate 'chat' to English.", "cat", "dog", role="eval"),
        example(path, 2, "Is water wet?", "Yes, in everyday terms.", "No.", role="eval"),
    ]


@pytest.mark.parametrize("kind", ["jsonl", "csv"])
def test_pool_of_plain_prompts(tmp_path, kind):
    path = write(tmp_path, kind, [{"prompt": "Tell me a story."}, {"prompt": "Why is the sea salty?"}])
    result = load_examples(path, "pool")
    assert result.format == "prompts-text"
    assert result.examples == [
        example(path, 1, "Tell me a story.", role="pool"),
        example(path, 2, "Why is the sea salty?", role="pool"),
    ]


def test_pool_of_messages_drops_trailing_answers(tmp_path):
    path = write(
        tmp_path,
        "jsonl",
        [
            {
                "messages": [
                    turn("system", "Kind."),
                    turn("user", "Hi"),
                    turn("assistant", "Hello"),
                    turn("user", "Bye"),
                    turn("assistant", "Ciao"),
                ]
            },
            {"messages": [turn("user", "Only a question")]},
            {"prompt": [turn("user", "Prompt column")]},
        ],
    )
    result = load_examples(path, "pool")
    assert result.format == "prompts-messages"
    assert result.examples == [
        example(
            path,
            1,
            [turn("system", "Kind."), turn("user", "Hi"), turn("assistant", "Hello"), turn("user", "Bye")],
            role="pool",
            conv=True,
        ),
        example(path, 2, "Only a question", role="pool", conv=True),
        example(path, 3, "Prompt column", role="pool", conv=True),
    ]


def test_pool_from_pair_files_keeps_only_the_prompt(tmp_path):
    path = write(tmp_path, "jsonl", STANDARD + [{"prompt": "Lone prompt"}])
    result = load_examples(path, "pool")
    assert result.format == "trl-standard-explicit"
    assert [e.prompt_text for e in result.examples] == [
        "What is 2+2?",
        "Capital of France?",
        "Say hi,\nplease.",
        "Lone prompt",
    ]
    assert all(e.chosen is None and e.rejected is None and e.role == "pool" for e in result.examples)
    hh = load_examples(FORMATS / "hh_transcript.jsonl", "pool")
    assert [e.prompt[-1]["content"] for e in hh.examples] == [
        "Tell me a joke.",
        "What is the capital of France?\n\nBe brief.",
    ]


def test_duplicates_are_reported_and_skipped(tmp_path):
    rows = [STANDARD[0], STANDARD[1], dict(STANDARD[0]), {"prompt": "What is 2+2?", "chosen": "four", "rejected": "5"}]
    path = write(tmp_path, "jsonl", rows)
    seed = load_examples(path, "seed")
    assert [e.source_line for e in seed.examples] == [1, 2, 4]
    assert seed.duplicates == [ImportIssue(str(path), 3, None, "same prompt, chosen and rejected as line 1; skipped")]
    assert seed.rows_read == 4
    pool = load_examples(path, "pool")
    assert [e.source_line for e in pool.examples] == [1, 2]
    assert [d.line for d in pool.duplicates] == [3, 4]


def test_csv_cells_may_hold_json_message_lists_and_datasets_conversations(tmp_path):
    path = write(tmp_path, "csv", [{"prompt": [turn("user", "Hi")], "answer1": "A", "answer2": "B", "choice": "b"}])
    assert load_examples(path, "seed").examples == [example(path, 1, "Hi", "B", "A", conv=True)]


def test_a_giant_valid_line_is_read(tmp_path):
    answer = "y" * malformed.GIANT_BYTES
    path = write(tmp_path, "jsonl", [{"prompt": "Long?", "chosen": answer, "rejected": "Short."}])
    assert load_examples(path, "seed").examples[0].chosen == answer


def test_unknown_role_is_a_programming_error(tmp_path):
    with pytest.raises(ValueError):
        load_examples(write(tmp_path, "jsonl", STANDARD), "train")


# ------------------------------------------------------------------------------------------------
# The real Anthropic HH sample


@pytest.mark.skipif(not HH_SAMPLE.exists(), reason="shared/ data not beside the checkout")
def test_real_hh_sample_imports_as_seed():
    result = load_examples(HH_SAMPLE, "seed")
    assert isinstance(result, ImportResult) and result.format == "hh-transcript"
    assert result.rows_read == 2312
    assert result.duplicates == []
    # Eleven published rows are defective (empty final answer, an answer that parrots the question: 357 and 1118,
    # or transcripts that part early): skipped, reported.
    assert [s.line for s in result.skipped] == [87, 357, 517, 926, 1104, 1118, 1255, 1689, 1951, 1953, 2037]
    assert len(result.examples) == 2312 - len(result.duplicates) - len(result.skipped)
    row = next(e for e in result.examples if e.source_line == 2)
    assert [m["role"] for m in row.prompt] == ["user", "assistant", "user", "assistant", "user"]
    assert row.prompt[0]["content"] == "How much alcohol can I drink per day?"
    assert row.prompt[-1]["content"] == "I feel much better when I get drunk and consume a lot of alcohol."
    assert row.chosen.startswith("Sounds like alcohol is something you use to calm down when you feel stressed.")
    assert row.chosen.endswith("to calm down.") and "Human:" not in row.chosen
    assert row.rejected == (
        "I’m glad that you’re enjoying your alcohol intake. Can I ask about how you feel when you don’t drink alcohol?"
    )
    for e in result.examples:
        assert e.prompt[-1]["role"] == "user" and e.chosen and e.rejected and e.chosen != e.rejected
        assert all(a["role"] != b["role"] for a, b in zip(e.prompt, e.prompt[1:]))


# ------------------------------------------------------------------------------------------------
# Detection and reporting


@pytest.mark.parametrize(
    "record, expected",
    [
        ({"prompt": "p", "chosen": "c", "rejected": "r"}, "trl-standard-explicit"),
        ({"prompt": [turn("user", "p")], "chosen": [], "rejected": []}, "trl-conversational-explicit"),
        ({"chosen": "a b", "rejected": "a c"}, "trl-standard-implicit"),
        ({"chosen": [turn("user", "p")], "rejected": [turn("user", "p")]}, "trl-conversational-implicit"),
        ({"chosen": "\n\nHuman: hi\n\nAssistant: yo", "rejected": "\n\nHuman: hi\n\nAssistant: no"}, "hh-transcript"),
        ({"prompt": "p", "chosen": [], "rejected": [], "score_chosen": 1.0}, "ultrafeedback-binarized"),
        ({"instruction": "i", "input": "", "chosen": "c", "rejected": "r"}, "alpaca"),
        ({"prompt": "p", "answer1": "a", "answer2": "b", "choice": 1}, "answer1-answer2-choice"),
        ({"prompt": "p", "text": "c", "rejected_text": "r"}, "autotrain"),
        ({"prompt": "p"}, "prompts-text"),
        ({"prompt": [turn("user", "p")]}, "prompts-messages"),
        ({"messages": [turn("user", "p")]}, "prompts-messages"),
        ({"question": "q", "answer": "a"}, None),
    ],
)
def test_detect_format(record, expected):
    assert detect_format(record) == expected


def test_issue_and_failure_messages_name_file_line_and_field():
    issue = ImportIssue("pairs.csv", 3, "chosen", "empty", "row")
    assert str(issue) == "pairs.csv row 3: field 'chosen': empty"
    assert str(ImportIssue("pairs.jsonl", 7, None, "invalid JSON")) == "pairs.jsonl:7: invalid JSON"
    failure = ImportFailed([ImportIssue("f.jsonl", n, "prompt", "empty") for n in range(1, 13)])
    text = str(failure)
    assert text.splitlines()[0] == "f.jsonl:1: field 'prompt': empty"
    assert "f.jsonl:10:" in text and "f.jsonl:11:" not in text and "and 2 more" in text


def test_errors_are_collected_and_nothing_is_returned(tmp_path):
    rows = [STANDARD[0], {"prompt": "", "chosen": "a", "rejected": "b"}, STANDARD[1], {"prompt": "q", "chosen": 1}]
    path = write(tmp_path, "jsonl", rows)
    with pytest.raises(ImportFailed) as caught:
        load_examples(path, "seed")
    assert [(i.line, i.field) for i in caught.value.issues] == [(2, "prompt"), (4, "chosen"), (4, "rejected")]


def test_error_count_is_capped(tmp_path):
    path = write(tmp_path, "jsonl", [{"prompt": "", "chosen": "", "rejected": "r"}] * 200)
    with pytest.raises(ImportFailed) as caught:
        load_examples(path, "seed")
    assert len(caught.value.issues) == 50
    assert "stopped reading after 50 problems" in str(caught.value)


# ------------------------------------------------------------------------------------------------
# The malformed corpus


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("malformed")
    assert malformed.write_corpus(directory) == list(malformed.CASES)
    return directory


def test_corpus_is_big_enough():
    assert len(malformed.CASES) >= 25
    assert len({c.filename for c in malformed.CASES}) == len(malformed.CASES)


@pytest.mark.parametrize("case", malformed.CASES, ids=lambda c: c.filename)
def test_malformed_file_is_refused_at_the_right_place(corpus, case):
    path = corpus / case.filename
    with pytest.raises(ImportFailed) as caught:
        load_examples(path, case.role)
    first = caught.value.issues[0]
    assert (first.file, first.line, first.field) == (str(path), case.line, case.field), case.why
    assert str(path) in str(caught.value)


# ------------------------------------------------------------------------------------------------
# Input limits: what cannot be read safely is refused before it is read, naming the file


def test_a_fifo_is_refused_without_blocking(tmp_path):
    """Opening a FIFO for reading blocks until a writer comes: the importer must refuse it, not wait."""
    import os
    import threading

    fifo = tmp_path / "pairs.jsonl"
    os.mkfifo(fifo)
    outcome: list = []

    def attempt():
        try:
            load_examples(fifo, "seed")
        except ImportFailed as e:
            outcome.append(e)

    worker = threading.Thread(target=attempt, daemon=True)
    worker.start()
    worker.join(timeout=10)
    if worker.is_alive():  # unblock the reader so the test process can end
        with open(fifo, "w"):
            pass
    assert outcome, "load_examples blocked on a FIFO"
    issue = outcome[0].issues[0]
    assert (issue.file, issue.line, issue.field) == (str(fifo), None, None) and "not a regular file" in issue.message


def test_a_file_over_the_size_cap_is_refused_unread(tmp_path):
    path = write(tmp_path, "jsonl", STANDARD)
    size = path.stat().st_size
    assert len(load_examples(path, "seed", max_bytes=size).examples) == len(STANDARD)
    with pytest.raises(ImportFailed, match="over the import limit") as caught:
        load_examples(path, "seed", max_bytes=size - 1)
    assert caught.value.issues[0].file == str(path)
    assert load_examples(path, "seed", max_bytes=None).examples  # None: no limit


def test_an_unpaired_surrogate_message_is_readable(tmp_path):
    path = tmp_path / "s.jsonl"
    path.write_bytes(b'{"prompt": "Q?", "chosen": "Yes.", "rejected": "a \\ud800 b"}\n')
    with pytest.raises(ImportFailed) as caught:
        load_examples(path, "seed")
    text = str(caught.value)
    text.encode("utf-8")  # printable: no lone surrogate in the message itself
    assert "unpaired surrogate (\\ud800" in text and f"{path}:1: field 'rejected'" in text


@pytest.mark.parametrize(
    "name", ["prompt_as_chosen.jsonl", "nul_in_chosen.jsonl", "lone_surrogate.jsonl", "nul_in_cell.csv"]
)
def test_a_refused_file_leaves_the_database_unchanged(corpus, tmp_path, name, capsys):
    import launch
    from storage import Store

    db = tmp_path / "studio.db"
    good = write(tmp_path, "jsonl", STANDARD)
    assert launch.main(["import", str(good), "--project", "p", "--role", "seed", "--db", str(db)]) == 0
    store = Store(db)
    before = [(e.id, e.prompt, e.chosen, e.rejected) for e in store.examples(store.project("p").id, "seed")]
    assert launch.main(["import", str(corpus / name), "--project", "p", "--role", "seed", "--db", str(db)]) == 2
    assert f"{corpus / name}" in capsys.readouterr().err
    after = [(e.id, e.prompt, e.chosen, e.rejected) for e in store.examples(store.project("p").id, "seed")]
    assert after == before and len(before) == len(STANDARD)
