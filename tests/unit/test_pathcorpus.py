"""The SOAP path corpus (lab/pathcorpus.py) and the stand-in's servlet-container normalizer
(lab/standins/oxstandin/servletpath.py): both pure, tested as plain functions."""

from __future__ import annotations

import pytest

from lab import pathcorpus
from lab.standins.oxstandin import servletpath


def test_the_corpus_has_at_least_2000_distinct_variants():
    variants = pathcorpus.variants()
    assert len(variants) >= 2000
    assert len({(v.method, v.path) for v in variants}) == len(variants)


def test_the_corpus_is_pure():
    """The same list every time: a failing variant can be named and sent again."""
    assert pathcorpus.variants() == pathcorpus.variants()


def test_every_axis_of_the_grammar_shows_in_the_corpus():
    paths = [v.path for v in pathcorpus.variants()]
    for needle in (";x", "//", "/;x/", "\\", "%5c", "%2f", "/./", "..;", "%2e%2e", "%252e", "%c0%ae",
                   "WEBSERVICES", "Servlet", "%77ebservices", "%2577ebservices", "%62alancer-manager"):
        assert any(needle in p for p in paths), needle
    assert {v.method for v in pathcorpus.variants()} == {"GET", "POST"}
    assert {v.target for v in pathcorpus.variants()} == {"soap", "axis2", "manager"}


def test_most_of_the_corpus_would_reach_an_admin_endpoint_unguarded():
    """The corpus has teeth: a servlet container handed these raw paths would dispatch most of
    them onto SOAP or balancer-manager (so reaching no backend is what keeps them out)."""
    variants = pathcorpus.variants()
    hits = [v for v in variants if servletpath.admin_candidates(v.path)]
    assert len(hits) >= 0.9 * len(variants)


@pytest.mark.parametrize("raw,dispatched", [
    ("/ajax/login", "/ajax/login"),
    ("/ajax/login;jsessionid=1.OX1?action=x", "/ajax/login"),
    ("/servlet;x/axis2/;y/services/X", "/servlet/axis2/services/X"),  # ;param on an empty segment
    ("/ajax/..;/webservices/X", "/webservices/X"),                   # "..;" is ".." to the container
    ("/ajax/%2e%2e/webservices", "/webservices"),
    ("/ajax/.%2E/webservices", "/webservices"),
    ("/servlet\\axis2\\services/X", "/servlet/axis2/services/X"),
    ("//webservices//X/", "/webservices/X/"),
    ("/webservices%3Bx/X", "/webservices;x/X"),                      # decoded after the params went
    ("/infostore/a%20b", "/infostore/a b"),
    ("/ajax/%c0%ae%c0%ae/webservices", "/webservices"),              # overlong UTF-8 dots
    ("/../webservices", None),                                      # above the root: 400
])
def test_dispatch_normalizes_like_a_servlet_container(raw, dispatched):
    assert servletpath.dispatch(raw) == dispatched


@pytest.mark.parametrize("raw", [
    "/ajax/%252e%252e/webservices",   # decoded twice
    "/webservices%3B/X",              # decoded before the params are dropped
    "/ajax/x%2f..%2f..%2fwebservices",  # an encoded slash taken as a slash
    "/ajax/%25c0%25ae%25c0%25ae/webservices",
])
def test_candidates_cover_double_decoding_and_other_orders(raw):
    assert servletpath.admin_candidates(raw), raw


@pytest.mark.parametrize("raw", ["/ajax/login", "/appsuite/api/x;jsessionid=1.OX1;foo=bar", "/webservicesx",
                                 "/servlet/axis2/servicesx/y", "/ajax/webservices"])
def test_app_paths_are_not_admin_candidates(raw):
    assert servletpath.admin_candidates(raw) == []


def test_admin_prefixes_ignore_case():
    assert servletpath.is_admin("/WebServices/X") and servletpath.is_admin("/Balancer-Manager")
    assert not servletpath.is_admin(None) and not servletpath.is_admin("/ajax")
