"""Parsing of MLflow-style run search filters and order-by clauses."""

import dataclasses

import pytest

from hub_ext.experiments.search import (
    Comparison,
    OrderBy,
    SearchError,
    parse_filter,
    parse_order_by,
)

C = Comparison
EXAMPLE = "metrics.loss < 0.5 and params.lr = '0.01'"


@pytest.mark.parametrize("text", [None, "", "   ", "\n\t "])
def test_empty_filter_is_no_filter(text):
    assert parse_filter(text) == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # metrics: numbers, every numeric operator
        ("metrics.loss < 0.5", [C("metric", "loss", "<", 0.5)]),
        ("metrics.loss <= 1", [C("metric", "loss", "<=", 1.0)]),
        ("metrics.acc > 0.9", [C("metric", "acc", ">", 0.9)]),
        ("metrics.acc >= 90", [C("metric", "acc", ">=", 90.0)]),
        ("metrics.step = 3", [C("metric", "step", "=", 3.0)]),
        ("metrics.step != 3", [C("metric", "step", "!=", 3.0)]),
        ("metrics.delta > -1.5", [C("metric", "delta", ">", -1.5)]),
        ("metrics.delta>-1.5", [C("metric", "delta", ">", -1.5)]),
        ("metrics.lr < 1e-3", [C("metric", "lr", "<", 0.001)]),
        ("metrics.lr < 2.5E+2", [C("metric", "lr", "<", 250.0)]),
        ("metrics.x < .5", [C("metric", "x", "<", 0.5)]),
        ("metrics.x < -.5", [C("metric", "x", "<", -0.5)]),
        ("metrics.x < +3", [C("metric", "x", "<", 3.0)]),
        ("metrics.x < 5.", [C("metric", "x", "<", 5.0)]),
        ("metric.loss < 0.5", [C("metric", "loss", "<", 0.5)]),
        ("METRICS.loss < 0.5", [C("metric", "loss", "<", 0.5)]),
        # keys with dots, dashes, slashes, digits; case is kept
        ("metrics.val/loss < 1", [C("metric", "val/loss", "<", 1.0)]),
        ("metrics.val-loss < 1", [C("metric", "val-loss", "<", 1.0)]),
        ("metrics.train.loss_2 < 1", [C("metric", "train.loss_2", "<", 1.0)]),
        ("metrics.Loss < 1", [C("metric", "Loss", "<", 1.0)]),
        # params and tags: strings, every string operator
        ("params.lr = '0.01'", [C("param", "lr", "=", "0.01")]),
        ('params.lr = "0.01"', [C("param", "lr", "=", "0.01")]),
        ("param.opt != 'adam'", [C("param", "opt", "!=", "adam")]),
        ("params.opt LIKE 'ad%'", [C("param", "opt", "LIKE", "ad%")]),
        ("params.opt ILIKE '%ADAM%'", [C("param", "opt", "ILIKE", "%ADAM%")]),
        ("tags.team = 'vision'", [C("tag", "team", "=", "vision")]),
        ("tag.team = ''", [C("tag", "team", "=", "")]),
        ("tags.mlflow.runName = 'run 1'", [C("tag", "mlflow.runName", "=", "run 1")]),
        ("tags.mlflow.user LIKE 'ali%'", [C("tag", "mlflow.user", "LIKE", "ali%")]),
        ("params.opt IN ('adam', 'sgd')", [C("param", "opt", "IN", ("adam", "sgd"))]),
        ("params.opt NOT IN ('adam')", [C("param", "opt", "NOT IN", ("adam",))]),
        ("tags.t in ('a','b' , \"c\")", [C("tag", "t", "IN", ("a", "b", "c"))]),
        # attributes, prefixed and bare, with aliases
        ("attributes.status = 'FINISHED'", [C("attribute", "status", "=", "FINISHED")]),
        ("attribute.status = 'FAILED'", [C("attribute", "status", "=", "FAILED")]),
        ("status = 'FINISHED'", [C("attribute", "status", "=", "FINISHED")]),
        ("run_name = 'x'", [C("attribute", "run_name", "=", "x")]),
        ("attributes.run_name LIKE 'base%'", [C("attribute", "run_name", "LIKE", "base%")]),
        (
            "attributes.run_id IN ('a', 'b')",
            [C("attribute", "run_id", "IN", ("a", "b"))],
        ),
        ("run_id NOT IN ('a')", [C("attribute", "run_id", "NOT IN", ("a",))]),
        ("attributes.user_id = 'ann'", [C("attribute", "user_id", "=", "ann")]),
        ("user = 'ann'", [C("attribute", "user_id", "=", "ann")]),
        ("attributes.user = 'ann'", [C("attribute", "user_id", "=", "ann")]),
        ("attributes.start_time > 1700000000000", [C("attribute", "start_time", ">", 1.7e12)]),
        ("created >= 5", [C("attribute", "start_time", ">=", 5.0)]),
        ("attributes.Created >= 5", [C("attribute", "start_time", ">=", 5.0)]),
        ("end_time != 0", [C("attribute", "end_time", "!=", 0.0)]),
        ("artifact_uri LIKE 's3://%'", [C("attribute", "artifact_uri", "LIKE", "s3://%")]),
        ("experiment_id = '7'", [C("attribute", "experiment_id", "=", "7")]),
        ("STATUS = 'RUNNING'", [C("attribute", "status", "=", "RUNNING")]),
        # several comparisons joined by AND
        (
            EXAMPLE,
            [C("metric", "loss", "<", 0.5), C("param", "lr", "=", "0.01")],
        ),
        (
            "metrics.a > 1 AND params.b = 'x' AND tags.c != 'y' AND status = 'FINISHED'",
            [
                C("metric", "a", ">", 1.0),
                C("param", "b", "=", "x"),
                C("tag", "c", "!=", "y"),
                C("attribute", "status", "=", "FINISHED"),
            ],
        ),
        (
            "  metrics.a>1   aNd\n\tparams.b='x'  ",
            [C("metric", "a", ">", 1.0), C("param", "b", "=", "x")],
        ),
        # the same key twice is kept twice, in order
        (
            "metrics.a > 1 and metrics.a < 2",
            [C("metric", "a", ">", 1.0), C("metric", "a", "<", 2.0)],
        ),
    ],
)
def test_valid_filters(text, expected):
    assert parse_filter(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # quoted keys: backticks and double quotes
        ("metrics.`my loss` < 1", C("metric", "my loss", "<", 1.0)),
        ("params.\"learning rate\" = '0.1'", C("param", "learning rate", "=", "0.1")),
        ("tags.`a=b` = 'c'", C("tag", "a=b", "=", "c")),
        ("tags.`it``s` = 'c'", C("tag", "it`s", "=", "c")),
        ("params.`x AND y` = 'z'", C("param", "x AND y", "=", "z")),
        ("`status` = 'FINISHED'", C("attribute", "status", "=", "FINISHED")),
        ("attributes.\"run_name\" = 'a'", C("attribute", "run_name", "=", "a")),
        # quoted values: doubling and backslash escapes
        ("params.p = 'it''s'", C("param", "p", "=", "it's")),
        ("params.p = 'it\\'s'", C("param", "p", "=", "it's")),
        ('params.p = "say ""hi"""', C("param", "p", "=", 'say "hi"')),
        ('params.p = "say \\"hi\\""', C("param", "p", "=", 'say "hi"')),
        ('params.p = "it\'s"', C("param", "p", "=", "it's")),
        ("params.p = 'a\\\\b'", C("param", "p", "=", "a\\b")),
        ("params.p LIKE '50\\%'", C("param", "p", "LIKE", "50\\%")),
        ("params.p = 'a AND b'", C("param", "p", "=", "a AND b")),
        ("params.p = 'x OR (y)'", C("param", "p", "=", "x OR (y)")),
        ("params.p = 'ünïcode ✓'", C("param", "p", "=", "ünïcode ✓")),
        ("params.p IN ('a,b', 'c''d')", C("param", "p", "IN", ("a,b", "c'd"))),
    ],
)
def test_quoting_and_escaping(text, expected):
    assert parse_filter(text) == [expected]


@pytest.mark.parametrize(
    ("op_text", "op"),
    [
        ("like", "LIKE"),
        ("Like", "LIKE"),
        ("ilike", "ILIKE"),
        ("iLike", "ILIKE"),
        ("in", "IN"),
        ("In", "IN"),
        ("not in", "NOT IN"),
        ("Not  In", "NOT IN"),
    ],
)
def test_word_operators_are_case_insensitive(op_text, op):
    value = ("a",) if op.endswith("IN") else "a"
    rhs = "('a')" if op.endswith("IN") else "'a'"
    assert parse_filter(f"params.p {op_text} {rhs}") == [C("param", "p", op, value)]


@pytest.mark.parametrize("word", ["and", "AND", "And", "aNd"])
def test_and_is_case_insensitive(word):
    assert parse_filter(f"metrics.a < 1 {word} metrics.b < 2") == [
        C("metric", "a", "<", 1.0),
        C("metric", "b", "<", 2.0),
    ]


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        # OR and parentheses
        ("metrics.a < 1 OR metrics.b < 2", "only AND is supported"),
        ("metrics.a < 1 or metrics.b < 2", "only AND is supported"),
        ("(metrics.a < 1)", "only AND is supported"),
        ("metrics.a < 1 and (metrics.b < 2)", "parentheses are not supported"),
        # operators
        ("metrics.a == 1", "use '='"),
        ("metrics.a <> 1", "use '!='"),
        ("metrics.a ! 1", "use '!='"),
        ("metrics.a LIKE 1", "operator 'LIKE' is not allowed for metrics.a"),
        ("metrics.a IN ('1')", "operator 'IN' is not allowed"),
        ("params.p > 'a'", "operator '>' is not allowed for params.p"),
        ("tags.t <= 'a'", "operator '<=' is not allowed"),
        ("status > 'A'", "operator '>' is not allowed for attributes.status"),
        ("start_time LIKE '1%'", "operator 'LIKE' is not allowed"),
        ("params.p NOT LIKE 'a'", "expected IN after NOT"),
        ("params.p IS NULL", "expected an operator after params.p, got 'IS'"),
        ("metrics.a 1", "expected an operator after metrics.a, got '1'"),
        ("metrics.a", "expected an operator after metrics.a, got 'end of input'"),
        # value types
        ("metrics.a < '0.5'", "metrics.a needs a number"),
        ("params.lr = 0.01", "quote it: params.lr = '0.01'"),
        ("tags.t = 5", "tags.t needs a quoted string"),
        ("status = FINISHED", "attributes.status needs a quoted string, got FINISHED"),
        ("start_time > '5'", "attributes.start_time needs a number"),
        ("metrics.a < inf", "metrics.a needs a number"),
        ("params.p = `x`", "params.p needs a quoted string"),
        # missing pieces
        ("metrics.a <", "missing value after metrics.a <"),
        ("metrics.a < 1 AND", "dangling AND"),
        ("metrics.a < 1 and ", "dangling AND"),
        ("AND metrics.a < 1", "expected an identifier such as metrics.loss, got 'AND'"),
        ("metrics.a < 1 AND AND metrics.b < 2", "got 'AND'"),
        ("< 1", "expected an identifier"),
        ("'x' = 'y'", "expected an identifier"),
        # strings and numbers
        ("params.p = 'abc", "unterminated string"),
        ('params.p = "abc', "unterminated string"),
        ("params.p = 'abc\\'", "unterminated string"),
        ("metrics.`abc < 1", "unterminated string"),
        ("metrics.a < 1.2.3", "malformed number"),
        ("metrics.a < 1e", "malformed number"),
        ("metrics.a < 5abc", "malformed number"),
        ("metrics.a < 1e999", "out of range"),
        ("metrics.a < -", "unexpected character '-'"),
        # identifiers
        ("foo.x = 'a'", "unknown prefix 'foo'"),
        ("metric_s.x < 1", "unknown prefix 'metric_s'"),
        ("metrics. < 1", "missing key after 'metrics.'"),
        ("metrics.`` < 1", "missing key"),
        ("metrics < 1", "missing key after 'metrics'"),
        ("loss < 0.5", "unknown attribute 'loss'"),
        ("attributes.bogus = 'x'", "allowed: artifact_uri, created, end_time"),
        ("attributes.mlflow.runName = 'x'", "unknown attribute 'mlflow.runName'"),
        # trailing junk and stray characters
        ("metrics.a < 1 metrics.b < 2", "join comparisons with AND"),
        ("metrics.a < 1)", "unexpected ')'"),
        ("metrics.a < 1;", "unexpected character ';'"),
        ("metrics.a < 1 AND params.p = 'x' extra", "unexpected 'extra'"),
        ("params.p = 'a' 'b'", "unexpected \"'b'\""),
        # IN lists
        ("params.p IN ()", "empty IN list"),
        ("params.p NOT IN ( )", "empty NOT IN list"),
        ("params.p IN 'a'", "IN needs a list like ('a', 'b')"),
        ("params.p IN ('a', 1)", "IN list items must be quoted strings, got '1'"),
        ("params.p IN ('a',)", "IN list items must be quoted strings, got ')'"),
        ("params.p IN ('a' 'b')", "expected ',' or ')' in IN list"),
        ("params.p IN ('a'", "expected ',' or ')' in IN list, got 'end of input'"),
    ],
)
def test_invalid_filters(text, fragment):
    with pytest.raises(SearchError) as info:
        parse_filter(text)
    message = str(info.value)
    assert fragment in message
    assert "Example: " in message


def test_error_shows_a_correct_example_and_position():
    with pytest.raises(SearchError, match=r"at character 10\)") as info:
        parse_filter("metrics.a == 1")
    example = str(info.value).split("Example: ", 1)[1]
    assert example == EXAMPLE
    assert parse_filter(example) == [C("metric", "loss", "<", 0.5), C("param", "lr", "=", "0.01")]


def test_search_error_is_a_value_error():
    assert issubclass(SearchError, ValueError)
    with pytest.raises(ValueError):
        parse_filter("metrics.a ==")


def test_results_are_frozen_dataclasses():
    comparison = parse_filter("metrics.a < 1")[0]
    order = parse_order_by(["metrics.a"])[0]
    for obj in (comparison, order):
        with pytest.raises(dataclasses.FrozenInstanceError):
            obj.key = "b"
    assert isinstance(comparison.value, float)
    assert isinstance(parse_filter("params.p = '1'")[0].value, str)
    assert isinstance(parse_filter("params.p IN ('1')")[0].value, tuple)


def test_filter_length_limit():
    # exactly 10000 characters is fine, one more is not
    clause = "params.p = '" + "x" * (10000 - len("params.p = ''")) + "'"
    assert len(clause) == 10000
    assert parse_filter(clause)[0].value == "x" * (10000 - 13)
    with pytest.raises(SearchError, match="longer than 10000 characters"):
        parse_filter(clause + " ")


def test_comparison_count_limit():
    hundred = " and ".join(f"metrics.m{i} < {i}" for i in range(100))
    assert len(parse_filter(hundred)) == 100
    with pytest.raises(SearchError, match="more than 100 comparisons"):
        parse_filter(hundred + " and metrics.extra < 1")


@pytest.mark.parametrize("items", [None, []])
def test_empty_order_by(items):
    assert parse_order_by(items) == []


@pytest.mark.parametrize(
    ("item", "expected"),
    [
        ("metrics.loss", OrderBy("metric", "loss", True)),
        ("metrics.loss ASC", OrderBy("metric", "loss", True)),
        ("metrics.loss asc", OrderBy("metric", "loss", True)),
        ("metrics.loss DESC", OrderBy("metric", "loss", False)),
        ("metrics.loss Desc", OrderBy("metric", "loss", False)),
        ("  metrics.loss   DESC  ", OrderBy("metric", "loss", False)),
        ("metric.val/loss", OrderBy("metric", "val/loss", True)),
        ("params.`lr`", OrderBy("param", "lr", True)),
        ("params.`learning rate` DESC", OrderBy("param", "learning rate", False)),
        ('params."learning rate"', OrderBy("param", "learning rate", True)),
        ("tags.mlflow.runName desc", OrderBy("tag", "mlflow.runName", False)),
        ("attributes.start_time DESC", OrderBy("attribute", "start_time", False)),
        ("attribute.end_time", OrderBy("attribute", "end_time", True)),
        ("start_time desc", OrderBy("attribute", "start_time", False)),
        ("created DESC", OrderBy("attribute", "start_time", False)),
        ("run_name", OrderBy("attribute", "run_name", True)),
        ("attributes.user", OrderBy("attribute", "user_id", True)),
        ("`status` ASC", OrderBy("attribute", "status", True)),
    ],
)
def test_valid_order_by(item, expected):
    assert parse_order_by([item]) == [expected]


def test_order_by_keeps_item_order():
    assert parse_order_by(["metrics.a DESC", "params.b", "start_time ASC"]) == [
        OrderBy("metric", "a", False),
        OrderBy("param", "b", True),
        OrderBy("attribute", "start_time", True),
    ]


@pytest.mark.parametrize(
    ("items", "fragment"),
    [
        (["metrics.loss DOWN"], "unknown sort direction 'DOWN', use ASC or DESC"),
        (["metrics.loss descending"], "unknown sort direction"),
        (["metrics.loss DESC ASC"], "unexpected 'ASC'"),
        (["metrics.a, metrics.b"], "one key per order_by item"),
        (["metrics.loss < 1"], "unexpected '<'"),
        (["foo.bar"], "unknown prefix 'foo'"),
        (["bogus DESC"], "unknown attribute 'bogus'"),
        (["metrics"], "missing key after 'metrics'"),
        (["DESC"], "expected an identifier"),
        (["metrics.`loss"], "unterminated string"),
        ([""], "expected a non-empty string"),
        (["   "], "expected a non-empty string"),
        ([None], "expected a non-empty string"),
        ("metrics.loss", "expected a list of strings"),
        (["x"] * 101, "more than 100 items"),
    ],
)
def test_invalid_order_by(items, fragment):
    with pytest.raises(SearchError) as info:
        parse_order_by(items)
    assert fragment in str(info.value)
