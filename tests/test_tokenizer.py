"""The CLIP tokenizer built offline from open_clip's bundled BPE file must be the real SDXL / SD3.5 tokenizer.

Reference files: ``alignment/model_configs/sdxl-turbo/tokenizer/{vocab.json,merges.txt}`` (the hub's files; the hub's
``tokenizer_2`` and SD3.5 ``tokenizer`` folders hold byte-identical copies, see SOURCES.md) and open_clip's own
``SimpleTokenizer`` (what HPSv2 and ViT-H-14 use).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

open_clip = pytest.importorskip("open_clip")
transformers = pytest.importorskip("transformers")
from transformers import AutoTokenizer, CLIPTokenizer  # noqa: E402

from training.clip_tokenizer import save_clip_tokenizer, save_slim_clip_tokenizer  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
REAL = ROOT / "alignment" / "model_configs" / "sdxl-turbo"
REAL_TOKENIZER = REAL / "tokenizer"  # pad <|endoftext|>, with vocab.json + merges.txt
REAL_TOKENIZER_2 = REAL / "tokenizer_2"  # pad "!" (id 0), configs only (vocab/merges identical to tokenizer/)

BOS, EOS = 49406, 49407

LONG = " ".join(f"word{i} red star" if i % 3 == 0 else "background" for i in range(300))
assert len(LONG.split()) >= 300

# Strings with "!" and strings that open_clip pre-cleans (HTML entities, mojibake): see the two "differs" tests.
BANG = ["Hello!!", "?!", "wow!", "a!b", "x!!!"]
CLEANING = ["&amp; html entities &lt;b&gt;", "a &quot;quoted&quot; word", "cafÃ© (mojibake)"]

# Strings on which the transformers tokenizer and open_clip must agree token for token.
AGREE = [
    "a red star on a blue background",
    "a picture of a tiny cyan cross, white background in the top left",
    "A Red STAR On A bLuE BackGround",
    "3 squares, 12 circles and 2.5 rings in 2024",
    "don't stop, the dogs' bowls aren't empty",
    "it's John's car",
    "café naïve résumé Über",
    "日本語 テキスト",
    "Привет мир",
    "emoji 🙂 and 🎉🎉 party 👩‍👩‍👧",
    "",
    "   leading and trailing spaces   ",
    "line\nbreaks\tand tabs",
    "punctuation, commas; colons: dots... (brackets) [x] {y} #tag @user",
    "question? yes. quotes \"double\" and 'single'",
    "hyphen-ated under_score a/b c\\d",
    LONG,
]


def _ids(tokenizer, text: str) -> list[int]:
    return tokenizer(text, padding="max_length", max_length=77, truncation=True).input_ids


def _open_clip_ids(tokenizer, text: str) -> list[int]:
    return tokenizer([text])[0].tolist()


@pytest.fixture(scope="module")
def built_bang(tmp_path_factory) -> Path:
    """Our tokenizer as SDXL's second text encoder (and open_clip) uses it: pad "!" (id 0)."""
    return save_clip_tokenizer(tmp_path_factory.mktemp("tok") / "clip-bang", pad_token="!")


@pytest.fixture(scope="module")
def built_eot(tmp_path_factory) -> Path:
    """Our tokenizer as SDXL's first text encoder uses it: pad <|endoftext|>."""
    return save_clip_tokenizer(tmp_path_factory.mktemp("tok") / "clip-eot")


@pytest.fixture(scope="module")
def ours(built_bang) -> CLIPTokenizer:
    return CLIPTokenizer.from_pretrained(built_bang)


@pytest.fixture(scope="module")
def oc_tokenizer():
    return open_clip.get_tokenizer("ViT-H-14")


@pytest.fixture(scope="module")
def real_tokenizer_2(tmp_path_factory) -> CLIPTokenizer:
    """The hub's SDXL-Turbo tokenizer_2: its two config files plus the shared real vocab.json / merges.txt."""
    folder = tmp_path_factory.mktemp("real") / "tokenizer_2"
    shutil.copytree(REAL_TOKENIZER_2, folder)
    for name in ("vocab.json", "merges.txt"):
        shutil.copy(REAL_TOKENIZER / name, folder / name)
    return CLIPTokenizer.from_pretrained(folder)


def test_vocab_and_merges_equal_the_real_sdxl_files(built_bang):
    ours_vocab = json.loads((built_bang / "vocab.json").read_text(encoding="utf-8"))
    real_vocab = json.loads((REAL_TOKENIZER / "vocab.json").read_text(encoding="utf-8"))
    assert len(ours_vocab) == 49408
    assert ours_vocab == real_vocab
    assert ours_vocab["<|startoftext|>"] == BOS and ours_vocab["<|endoftext|>"] == EOS and ours_vocab["!"] == 0
    ours_merges = (built_bang / "merges.txt").read_text(encoding="utf-8")
    real_merges = (REAL_TOKENIZER / "merges.txt").read_text(encoding="utf-8")
    assert ours_merges == real_merges


def test_saved_folder_config(ours):
    assert ours.model_max_length == 77
    assert ours.pad_token == "!" and ours.pad_token_id == 0
    assert ours.bos_token_id == BOS and ours.eos_token_id == EOS
    assert len(ours) == 49408


@pytest.mark.parametrize("text", AGREE, ids=[f"s{i}" for i in range(len(AGREE))])
def test_ids_match_open_clip(ours, oc_tokenizer, text):
    ids = _ids(ours, text)
    assert len(ids) == 77
    assert ids == _open_clip_ids(oc_tokenizer, text)


def test_long_text_is_truncated_to_77_with_eos_last(ours, oc_tokenizer):
    ids = _ids(ours, LONG)
    assert len(ids) == 77 and ids[0] == BOS and ids[-1] == EOS
    assert 0 not in ids  # no padding needed
    assert ids == _open_clip_ids(oc_tokenizer, LONG)


def test_empty_string_is_bos_eos_then_padding(ours):
    assert _ids(ours, "") == [BOS, EOS] + [0] * 75


def test_default_pad_build_equals_real_sdxl_tokenizer(built_eot):
    """With the default pad (<|endoftext|>) the build is SDXL-Turbo's first tokenizer, padding included."""
    ours_eot = CLIPTokenizer.from_pretrained(built_eot)
    real = CLIPTokenizer.from_pretrained(REAL_TOKENIZER)
    assert ours_eot.pad_token == real.pad_token == "<|endoftext|>"
    for text in AGREE + BANG + CLEANING:
        assert _ids(ours_eot, text) == _ids(real, text), text


def test_exclamation_mark_differs_from_open_clip_when_it_is_the_pad_token(ours, oc_tokenizer, real_tokenizer_2, built_eot):
    """Known difference, documented so nobody is surprised.

    With pad_token "!" (SDXL's tokenizer_2, open_clip's convention) transformers registers "!" as a special token and
    splits it out of the text before BPE: "Hello!!" -> hello, !, ! (ids 3306, 0, 0) whereas open_clip's BPE gives
    hello, !! (3306, 748); even a single "wow!" maps "!" to 0 instead of "!</w>" = 256. The real hub tokenizer_2,
    loaded with transformers, does exactly the same, so the toy pipelines tokenize like the real SDXL ones.
    With pad <|endoftext|> (SDXL's first tokenizer) the ids agree with open_clip on these strings.
    """
    hello = "Hello!!"
    assert _ids(ours, hello)[:5] == [BOS, 3306, 0, 0, EOS]
    assert _open_clip_ids(oc_tokenizer, hello)[:4] == [BOS, 3306, 748, EOS]
    assert _ids(ours, hello) != _open_clip_ids(oc_tokenizer, hello)
    for text in BANG:
        assert _ids(ours, text) == _ids(real_tokenizer_2, text), text
        assert _ids(ours, text) != _open_clip_ids(oc_tokenizer, text), text
    # The cause is the pad token: the <|endoftext|>-padded build agrees with open_clip up to the pad id.
    eot = CLIPTokenizer.from_pretrained(built_eot)
    for text in BANG:
        a, b = _ids(eot, text), _open_clip_ids(oc_tokenizer, text)
        n = a.index(EOS) + 1
        assert a[:n] == b[:n], text


@pytest.mark.parametrize("text", AGREE, ids=[f"s{i}" for i in range(len(AGREE))])
def test_bang_build_equals_real_tokenizer_2(ours, real_tokenizer_2, text):
    assert _ids(ours, text) == _ids(real_tokenizer_2, text)


def test_slim_tokenizer(tmp_path, ours):
    out = save_slim_clip_tokenizer(tmp_path / "slim", pad_token="!")
    files = {p.name for p in out.iterdir()}
    assert "tokenizer.json" not in files
    assert {"vocab.json", "merges.txt", "tokenizer_config.json"} <= files
    slim = CLIPTokenizer.from_pretrained(out)
    assert slim.model_max_length == 77
    assert slim.pad_token == "!" and slim.pad_token_id == 0
    auto = AutoTokenizer.from_pretrained(out)
    assert auto.model_max_length == 77
    for text in ("a red star on a blue background", "café naïve", LONG, ""):
        assert _ids(slim, text) == _ids(ours, text)
        assert _ids(auto, text) == _ids(ours, text)


@pytest.mark.parametrize("text", CLEANING, ids=["html", "quot", "mojibake"])
def test_text_cleaning_differs_from_open_clip(ours, oc_tokenizer, real_tokenizer_2, text):
    """Known difference, documented: open_clip runs ftfy.fix_text and html.unescape before BPE ("&amp;" -> "&",
    "cafÃ©" -> "café"); transformers' CLIPTokenizer does not. Ours behaves like the real hub tokenizer here, which is
    what the diffusers pipelines use."""
    assert _ids(ours, text) != _open_clip_ids(oc_tokenizer, text)
    assert _ids(ours, text) == _ids(real_tokenizer_2, text)
