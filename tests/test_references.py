"""Case references: `PAS-2026-000123-K`, shape and check character (engine/references.py)."""

from __future__ import annotations

import re

import pytest

from engine.references import ALPHABET, check_character, make, normalise

SHAPE = re.compile(r"[A-Z]{2,5}-[0-9]{4}-[0-9]{6,}-[0-9A-Z]")

#: References a person could be handed: several prefixes, years and numbers.
SAMPLE = [reference
          for prefix in ("PAS", "ASC", "CJN", "AB", "ABCDE")
          for year in (2026, 2027, 1999)
          for number in (1, 7, 42, 123, 999, 4_096, 99_999, 999_999, 1_234_567)
          if (reference := make(prefix, year, number)) is not None]


def single_substitutions(reference: str) -> list[str]:
    """Every string with one alphanumeric character of `reference` replaced by another."""
    return [reference[:i] + other + reference[i + 1:]
            for i, char in enumerate(reference) if char != "-"
            for other in ALPHABET if other != char]


def adjacent_transpositions(reference: str) -> list[str]:
    """Every string with two neighbouring, different alphanumeric characters swapped."""
    return [reference[:i] + reference[i + 1] + reference[i] + reference[i + 2:]
            for i in range(len(reference) - 1)
            if "-" not in reference[i:i + 2] and reference[i] != reference[i + 1]]


def test_make_gives_the_documented_shape() -> None:
    assert str(make("PAS", 2026, 1)).startswith("PAS-2026-000001-")
    assert str(make("PAS", 2026, 1_234_567)).startswith("PAS-2026-1234567-")
    for reference in SAMPLE:
        assert SHAPE.fullmatch(reference), reference
        body, check = reference.rsplit("-", 1)
        assert check == check_character(body.replace("-", ""))


def test_every_issued_reference_is_accepted_as_it_is() -> None:
    assert [normalise(r) for r in SAMPLE] == SAMPLE


def test_normalise_accepts_lower_case_and_surrounding_spaces() -> None:
    reference = make("PAS", 2026, 123)
    assert normalise(reference.lower()) == reference
    assert normalise(f"  {reference}\t\n") == reference
    assert normalise(f" {reference.lower()} ") == reference


@pytest.mark.parametrize("typed", [
    "", "PAS", "PAS-2026", "PAS-2026-000123", "PAS-26-000123-K", "PAS-2026-00123-K",
    "P-2026-000123-K", "PASSPO-2026-000123-K", "PAS 2026 000123 K", "PAS-2026-000123-KK",
    "PAS_2026_000123_K", "PAS-2026-000123-", "PAS-2O26-000123-K", "PAS-2026-000123-K-1",
])
def test_normalise_refuses_a_wrong_shape(typed: str) -> None:
    assert normalise(typed) is None


def test_the_check_character_catches_every_single_substitution() -> None:
    for reference in SAMPLE:
        accepted = [typo for typo in single_substitutions(reference) if normalise(typo)]
        assert accepted == [], reference


def test_the_check_character_catches_every_inner_space_or_removed_character() -> None:
    reference = make("CJN", 2026, 4_321)
    for i in range(1, len(reference) - 1):
        assert normalise(reference[:i] + reference[i + 1:]) is None
        assert normalise(reference[:i] + " " + reference[i:]) is None


def test_the_check_character_catches_every_adjacent_transposition() -> None:
    # the first 600 passport numbers of a year, as a citizen would read them off a receipt
    sample = [*SAMPLE, *(r for n in range(1, 601) if (r := make("PAS", 2026, n)))]
    missed = [(reference, typo) for reference in sample
              for typo in adjacent_transpositions(reference) if normalise(typo)]
    assert missed == []


def test_issued_references_keep_their_check_character() -> None:
    """Fixed values: changing the algorithm would invalidate every reference already issued."""
    assert make("PAS", 2026, 1) == "PAS-2026-000001-1"
    assert make("CJN", 2026, 1) == "CJN-2026-000001-R"
    assert make("ASC", 2026, 1) == "ASC-2026-000001-3"


def test_numbers_whose_check_has_no_character_are_skipped() -> None:
    skipped = [n for n in range(1, 3701) if make("PAS", 2026, n) is None]
    assert 60 <= len(skipped) <= 140  # about 1 in 37
    assert make("PAS", 2026, 2) is None  # its check value is 36
