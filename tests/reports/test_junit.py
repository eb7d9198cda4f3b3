"""junit.xml: one testcase per gate and per sanity check, valid against the Jenkins junit-10 schema."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from reports import junit

xmlschema = pytest.importorskip("xmlschema")  # in the test extra

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="module")
def schema():
    return xmlschema.XMLSchema(str(junit.SCHEMA))


@pytest.fixture(scope="module")
def results() -> dict:
    return json.loads((DATA / "results.json").read_text())


def cases(root: ET.Element) -> dict[str, ET.Element]:
    return {c.get("name"): c for c in root.iter("testcase")}


def test_fixture_report_is_valid_and_counts_match(tmp_path, schema, results):
    path = junit.render(results, tmp_path / "junit.xml")
    schema.validate(str(path))
    root = ET.parse(path).getroot()
    assert root.tag == "testsuites"
    n_gates, n_checks = len(results["gates"]), len(results["sanity_checks"])
    assert root.get("tests") == str(n_gates + n_checks) == "12"
    assert root.get("failures") == "1" and root.get("errors") == "0"
    gates, checks = root.findall("testsuite")
    assert (gates.get("name"), gates.get("tests"), gates.get("failures"), gates.get("skipped")) == (
        "robustness.gates",
        "4",
        "1",
        "0",
    )
    assert (checks.get("tests"), checks.get("failures"), checks.get("skipped")) == ("8", "0", "1")
    c = cases(root)
    assert set(c) == {g["name"] for g in results["gates"]} | {s["name"] for s in results["sanity_checks"]}
    failed = c["min_robust_accuracy@0.2"].find("failure")
    assert failed is not None
    assert failed.get("message") == "min_robust_accuracy@0.2: value 0.005, required ≥ 0.100"
    assert c["min_robust_accuracy@0.2"].get("classname") == "robustness.gates"
    assert c["min_robust_accuracy@0.1"].find("failure") is None
    # The gate at an eps takes that eps's attack time.
    assert c["min_robust_accuracy@0.1"].get("time") == f"{results['robust'][1]['time_s']:.3f}"
    # Waived: skipped with the reason, the detail kept in system-out.
    waived = c["black_box_not_stronger"]
    assert waived.find("skipped").get("message").startswith("waived: No black-box attack in the quick preset")
    assert "waived by the user" in waived.find("system-out").text
    props = {p.get("name"): p.get("value") for p in gates.iter("property")}
    assert props["verdict"] == "fail" and props["model_sha256"] == results["model"]["sha256"]


def test_failed_skipped_and_unknown_check_statuses(schema, results):
    res = copy.deepcopy(results)
    res["sanity_checks"][0]["status"] = "fail"
    res["sanity_checks"][1]["status"] = "skip"
    res["sanity_checks"][1]["detail"] = "Only one eps was evaluated."
    res["sanity_checks"][2]["status"] = "errored"  # unknown: must never read as a pass
    res["sanity_checks"][3]["detail"] = "control \x00\x07 characters \x1b stay readable"
    text = junit.to_xml(res)
    schema.validate(text)
    root = ET.fromstring(text.encode())
    c = cases(root)
    assert c[res["sanity_checks"][0]["name"]].find("failure").get("type") == "SanityCheckFailed"
    assert (
        c[res["sanity_checks"][1]["name"]].find("skipped").get("message")
        == "skipped: Only one eps was evaluated."
    )
    assert c[res["sanity_checks"][2]["name"]].find("failure") is not None
    assert root.get("failures") == "3"  # the gate, the failed check, the unknown status


def test_schema_accepts_pytest_output_and_rejects_broken_documents(tmp_path, schema):
    """The vendored schema is the real constraint: pytest's own junit (pytest validates it against
    Jenkins' junit-10.xsd) passes, while a testcase without a name or a bad suite time fails."""
    (tmp_path / "test_x.py").write_text(
        "import pytest\n"
        "def test_ok(): pass\n"
        "def test_bad(): assert 1 == 2\n"
        "@pytest.mark.skip(reason='r')\n"
        "def test_skip(): pass\n"
    )
    xml = tmp_path / "out.xml"
    subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={xml}", str(tmp_path)],
        capture_output=True,
        cwd=tmp_path,
        check=False,
    )
    schema.validate(str(xml))
    ok = '<testsuites><testsuite name="s" tests="1" failures="0" errors="0" time="1.250"><testcase name="a"/></testsuite></testsuites>'
    schema.validate(ok)
    assert not schema.is_valid(ok.replace('<testcase name="a"/>', "<testcase/>"))
    assert not schema.is_valid(ok.replace('time="1.250"', 'time="1.2504"'))
    assert not schema.is_valid(ok.replace(' failures="0"', ""))
