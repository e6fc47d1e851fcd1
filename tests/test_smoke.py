import flask_keitaro


def test_version() -> None:
    assert flask_keitaro.__version__.count(".") == 2
