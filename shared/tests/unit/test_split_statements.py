"""Migrations run DDL one statement at a time: how a script is split."""

from __future__ import annotations

from writer_images.db import split_statements


def test_statements_split_on_semicolons_even_on_one_line() -> None:
    assert split_statements("DROP TABLE a; DROP TABLE b;\nCREATE TABLE c (x int);\n") == [
        "DROP TABLE a",
        "DROP TABLE b",
        "CREATE TABLE c (x int)",
    ]


def test_function_bodies_keep_their_semicolons() -> None:
    script = (
        "CREATE FUNCTION f() RETURNS void LANGUAGE sql AS $$\n    SELECT 1;\n    SELECT 2;\n$$;\nSELECT f();"
    )
    assert split_statements(script) == [
        "CREATE FUNCTION f() RETURNS void LANGUAGE sql AS $$\n    SELECT 1;\n    SELECT 2;\n$$",
        "SELECT f()",
    ]


def test_comment_lines_split_nothing_and_are_dropped() -> None:
    script = "-- counts; then status; then nothing\nCREATE TABLE a (x int);\n-- only a comment;\n"
    assert split_statements(script) == ["CREATE TABLE a (x int)"]
