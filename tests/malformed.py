"""A corpus of malformed import files, written at test time (one is 10 MB, too big to commit).

Each case names the file, the role it is imported as, and where its first reported problem must be:
the line (or row / element, see engine.data.importers) and the field; None where the problem has no line
or no single field."""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

GIANT_BYTES = 10 * 1024 * 1024


@dataclass(frozen=True)
class Case:
    filename: str
    line: int | None
    field: str | None
    role: str = "seed"
    why: str = ""


def _pair(i: int) -> dict:
    return {"prompt": f"Question {i}?", "chosen": f"Good answer {i}.", "rejected": f"Bad answer {i}."}


def _jsonl(rows: list) -> bytes:
    return b"".join(json.dumps(r, ensure_ascii=False).encode() + b"\n" for r in rows)


def _conv(prompt: str, answer: str) -> list[dict]:
    return [{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}]


def _write_bytes(data: bytes) -> Callable[[Path], None]:
    return lambda path: path.write_bytes(data)


def _write_parquet(rows: list[dict]) -> Callable[[Path], None]:
    def write(path: Path) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(rows), path)

    return write


def _write_datasetdict(path: Path) -> None:
    from datasets import Dataset, DatasetDict

    split = Dataset.from_list([_pair(1)])
    DatasetDict({"train_prefs": split, "test_prefs": split}).save_to_disk(str(path))


def _write_not_a_dataset(path: Path) -> None:
    path.mkdir()
    (path / "notes.txt").write_text("just a folder\n")


def _write_giant_truncated(path: Path) -> None:
    with open(path, "wb") as fh:
        fh.write(b'{"prompt": "Summarise this.", "chosen": "')
        fh.write(b"x" * GIANT_BYTES)
        fh.write(b"\n")


_CSV_HEADER = "prompt,chosen,rejected\n"
_HH_OK = "\n\nHuman: Hi\n\nAssistant: Hello!"
_USER_HI = {"role": "user", "content": "Hi"}
_ANSWER_A = {"role": "assistant", "content": "A"}
_ANSWER_B = {"role": "assistant", "content": "B"}

_CORPUS: tuple[tuple[Case, Callable[[Path], None]], ...] = (
    (
        Case("truncated.jsonl", 4, None, why="line cut short mid-object"),
        _write_bytes(_jsonl([_pair(1), _pair(2), _pair(3)]) + b'{"prompt": "Question 4?", "chosen": "Go'),
    ),
    (
        Case("latin1.jsonl", 3, "chosen", why="cp1252 byte inside a string"),
        _write_bytes(_jsonl([_pair(1), _pair(2)]) + b'{"prompt": "Q?", "chosen": "caf\xe9", "rejected": "tea"}\n'),
    ),
    (
        Case("latin1.csv", 2, "prompt", why="cp1252 byte in a CSV cell"),
        _write_bytes(b"prompt,chosen,rejected\nq1,a,b\nna\xefve?,yes,no\n"),
    ),
    (
        Case("missing_rejected.jsonl", 1, "rejected", why="no rejected column"),
        _write_bytes(_jsonl([{"prompt": "Q?", "chosen": "A."}])),
    ),
    (
        Case("missing_column.csv", 1, "rejected", why="no rejected column in CSV"),
        _write_bytes(b"prompt,chosen\nq,a\n"),
    ),
    (
        Case("empty_chosen.jsonl", 2, "chosen", why="chosen is only whitespace"),
        _write_bytes(_jsonl([_pair(1), {"prompt": "Q?", "chosen": "   ", "rejected": "No."}])),
    ),
    (
        Case("empty_rejected.json", 3, "rejected", why="empty rejected in a JSON array"),
        _write_bytes(json.dumps([_pair(1), _pair(2), {"prompt": "Q?", "chosen": "Yes.", "rejected": ""}]).encode()),
    ),
    (
        Case("empty_prompt.jsonl", 1, "prompt", why="empty prompt"),
        _write_bytes(_jsonl([{"prompt": " \n", "chosen": "Yes.", "rejected": "No."}])),
    ),
    (
        Case("same_answers.jsonl", 2, "rejected", why="chosen == rejected"),
        _write_bytes(_jsonl([_pair(1), {"prompt": "Q?", "chosen": "Same.", "rejected": " Same. "}])),
    ),
    (
        Case("prompts_only_as_eval.jsonl", 1, "chosen", role="eval", why="a prompt pool given as eval"),
        _write_bytes(_jsonl([{"prompt": "Q1?"}, {"prompt": "Q2?"}])),
    ),
    (
        Case("prompts_only_as_eval.csv", 1, "chosen", role="eval", why="a prompt pool given as eval"),
        _write_bytes(b"prompt\nQ1?\n"),
    ),
    (
        Case("chosen_number.jsonl", 2, "chosen", why="chosen is a number"),
        _write_bytes(_jsonl([_pair(1), {"prompt": "Q?", "chosen": 42, "rejected": "No."}])),
    ),
    (
        Case("message_without_role.jsonl", 1, "prompt[0].role", why="message lacks role"),
        _write_bytes(
            _jsonl(
                [
                    {
                        "prompt": [{"content": "Hi"}],
                        "chosen": [{"role": "assistant", "content": "Yo"}],
                        "rejected": [{"role": "assistant", "content": "No"}],
                    }
                ]
            )
        ),
    ),
    (
        Case("message_without_content.jsonl", 2, "chosen[0].content", why="message lacks content"),
        _write_bytes(
            _jsonl(
                [
                    {
                        "prompt": [{"role": "user", "content": "Hi"}],
                        "chosen": [{"role": "assistant", "content": "Yo"}],
                        "rejected": [{"role": "assistant", "content": "No"}],
                    },
                    {
                        "prompt": [{"role": "user", "content": "Hi"}],
                        "chosen": [{"role": "assistant"}],
                        "rejected": [{"role": "assistant", "content": "No"}],
                    },
                ]
            )
        ),
    ),
    (
        Case("prompt_ends_with_assistant.jsonl", 1, "prompt", why="last prompt turn is not the user's"),
        _write_bytes(
            _jsonl(
                [
                    {
                        "prompt": _conv("Hi", "Hello"),
                        "chosen": [{"role": "assistant", "content": "A"}],
                        "rejected": [{"role": "assistant", "content": "B"}],
                    }
                ]
            )
        ),
    ),
    (
        Case("chosen_not_assistant.jsonl", 1, "chosen", why="chosen is a user turn"),
        _write_bytes(
            _jsonl(
                [
                    {
                        "prompt": [{"role": "user", "content": "Hi"}],
                        "chosen": [{"role": "user", "content": "A"}],
                        "rejected": [{"role": "assistant", "content": "B"}],
                    }
                ]
            )
        ),
    ),
    (
        Case("unknown_role.jsonl", 1, "messages[0].role", role="pool", why="role is not system/user/assistant"),
        _write_bytes(_jsonl([{"messages": [{"role": "robot", "content": "beep"}]}])),
    ),
    (
        Case("implicit_diverges.jsonl", 1, "rejected", why="implicit conversations differ before the last turn"),
        _write_bytes(_jsonl([{"chosen": _conv("Hi", "Hello"), "rejected": _conv("Bye", "Ciao")}])),
    ),
    (
        Case("empty_cell.csv", 3, "rejected", why="empty CSV cell"),
        _write_bytes((_CSV_HEADER + "q1,a,b\nq2,a,b\nq3,a,\n").encode()),
    ),
    (
        Case("nan_cell.csv", 2, "chosen", why="NaN written by pandas"),
        _write_bytes((_CSV_HEADER + "q1,a,b\nq2,NaN,b\n").encode()),
    ),
    (
        Case("null_chosen.parquet", 2, "chosen", why="null in a Parquet column"),
        _write_parquet([_pair(1), {"prompt": "Q?", "chosen": None, "rejected": "No."}]),
    ),
    (
        Case("ragged.csv", 3, None, why="a CSV line with too many fields"),
        _write_bytes((_CSV_HEADER + "q1,a,b\nq2,a,b,extra\n").encode()),
    ),
    (
        Case("bad_choice.csv", 2, "choice", why="choice is neither 1/2, answer1/answer2 nor a/b"),
        _write_bytes(b"prompt,answer1,answer2,choice\nq1,a,b,1\nq2,a,b,c\n"),
    ),
    (
        Case("alpaca_empty_instruction.jsonl", 1, "instruction", why="alpaca without an instruction"),
        _write_bytes(_jsonl([{"instruction": "", "input": "x", "chosen": "A", "rejected": "B"}])),
    ),
    (
        Case("autotrain_missing.jsonl", 1, "rejected_text", why="AutoTrain without rejected_text"),
        _write_bytes(_jsonl([{"prompt": "Q?", "text": "A"}])),
    ),
    (
        Case("hh_not_transcript.jsonl", 2, "chosen", why="an HH file whose row 2 is plain text"),
        _write_bytes(
            _jsonl([{"chosen": _HH_OK, "rejected": _HH_OK + "?"}, {"chosen": "just text", "rejected": "other text"}])
        ),
    ),
    (
        Case("ultrafeedback_mismatch.jsonl", 1, "rejected", why="UltraFeedback prompts differ"),
        _write_bytes(
            _jsonl(
                [
                    {
                        "prompt": "Hi",
                        "chosen": _conv("Hi", "A"),
                        "rejected": _conv("Yo", "B"),
                        "score_chosen": 8.0,
                        "score_rejected": 2.0,
                    }
                ]
            )
        ),
    ),
    (
        Case("mixed_formats.jsonl", 3, None, why="a TRL file with an alpaca row"),
        _write_bytes(_jsonl([_pair(1), _pair(2), {"instruction": "Do", "input": "", "chosen": "A", "rejected": "B"}])),
    ),
    (
        Case("transcript_in_plain_file.jsonl", 2, None, why="an HH row in a plain implicit-prompt file"),
        _write_bytes(
            _jsonl(
                [
                    {"chosen": "The sky is blue.", "rejected": "The sky is red."},
                    {"chosen": _HH_OK, "rejected": _HH_OK + "?"},
                ]
            )
        ),
    ),
    (
        Case("text_in_conversational.jsonl", 2, "chosen", why="a plain-text answer in a conversational file"),
        _write_bytes(
            _jsonl(
                [
                    {"prompt": [_USER_HI], "chosen": [_ANSWER_A], "rejected": [_ANSWER_B]},
                    {"prompt": [_USER_HI], "chosen": "A", "rejected": [_ANSWER_B]},
                ]
            )
        ),
    ),
    (
        Case("not_an_object.jsonl", 2, None, why="a JSON array on a JSONL line"),
        _write_bytes(_jsonl([_pair(1), [1, 2]])),
    ),
    (
        Case("unknown_format.jsonl", 1, None, why="no known column set"),
        _write_bytes(_jsonl([{"question": "Q?", "answer": "A."}])),
    ),
    (Case("empty.jsonl", None, None, why="zero bytes"), _write_bytes(b"")),
    (Case("blank_lines.jsonl", None, None, why="only blank lines"), _write_bytes(b"\n  \n\n")),
    (Case("header_only.csv", None, None, why="a header and no rows"), _write_bytes(_CSV_HEADER.encode())),
    (Case("empty_array.json", None, None, why="an empty JSON array"), _write_bytes(b"[]")),
    (
        Case("single_object.json", None, None, why="one object instead of an array"),
        _write_bytes(json.dumps(_pair(1)).encode()),
    ),
    (
        Case("broken.json", 3, None, why="JSON syntax error on line 3"),
        _write_bytes(
            b'[\n  {"prompt": "Q?", "chosen": "A", "rejected": "B"},\n  {"prompt": "Q2?" "chosen": "A"}\n]\n'
        ),
    ),
    (Case("not_gzip.jsonl.gz", None, None, why="a .gz that is not gzip"), _write_bytes(b'{"prompt": "Q?"}\n')),
    (
        Case("truncated.jsonl.gz", 1, None, why="a gzip stream cut short"),
        _write_bytes(gzip.compress(_jsonl([_pair(1)]))[:-12]),
    ),
    (Case("corrupt.parquet", None, None, why="not Parquet at all"), _write_bytes(b"PAR1 this is not parquet")),
    (Case("notes.txt", None, None, why="unsupported file type"), _write_bytes(b"prompt: hi\n")),
    (Case("not_a_dataset", None, None, why="a directory that is not a datasets folder"), _write_not_a_dataset),
    (Case("no_train_split", None, None, why="a DatasetDict with several splits and no 'train'"), _write_datasetdict),
    (Case("giant_truncated.jsonl", 1, None, why="a 10 MB single line cut short"), _write_giant_truncated),
    (
        Case("prompt_as_chosen.jsonl", 2, "chosen", why="chosen repeats the prompt"),
        _write_bytes(_jsonl([_pair(1), {"prompt": "Say hi.", "chosen": " Say hi.", "rejected": "Hi!"}])),
    ),
    (
        Case("prompt_as_rejected.csv", 1, "rejected", why="rejected repeats the prompt"),
        _write_bytes((_CSV_HEADER + "Say hi.,Hi!,Say hi.\n").encode()),
    ),
    (
        Case("prompt_as_answer_conversational.jsonl", 1, "rejected", why="a conversational answer repeats the prompt"),
        _write_bytes(
            _jsonl(
                [{"prompt": [_USER_HI], "chosen": [_ANSWER_A], "rejected": [{"role": "assistant", "content": "Hi"}]}]
            )
        ),
    ),
    (
        Case("nul_in_chosen.jsonl", 3, "chosen", why="a NUL character (JSON \\u0000) in an answer"),
        _write_bytes(_jsonl([_pair(1), _pair(2), {"prompt": "Q?", "chosen": "A\x00B", "rejected": "No."}])),
    ),
    (
        Case("nul_in_message.jsonl", 1, "prompt[0].content", why="a NUL character in a prompt message"),
        _write_bytes(
            _jsonl(
                [{"prompt": [{"role": "user", "content": "H\x00i"}], "chosen": [_ANSWER_A], "rejected": [_ANSWER_B]}]
            )
        ),
    ),
    (
        Case("nul_in_cell.csv", 2, "prompt", why="a raw NUL byte in a CSV cell"),
        _write_bytes(b"prompt,chosen,rejected\nq1,a,b\nq\x002,a,b\n"),
    ),
    (
        Case("lone_surrogate.jsonl", 2, "rejected", why="an unpaired surrogate escape (\\ud800) in an answer"),
        _write_bytes(_jsonl([_pair(1)]) + b'{"prompt": "Q?", "chosen": "Yes.", "rejected": "bad \\ud800 text"}\n'),
    ),
)

CASES: tuple[Case, ...] = tuple(case for case, _ in _CORPUS)


def write_corpus(directory: str | Path) -> list[Case]:
    """Write every malformed file into `directory` and say where each one's first problem is."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    for case, write in _CORPUS:
        write(directory / case.filename)
    return list(CASES)
