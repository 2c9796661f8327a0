"""Tenant names are names, not paths (issue 21 item 17): `--tenant /abs/path` or `../x` must not
load an arbitrary YAML file as a tenant, and a bad tenant file is one clear line."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from core.errors import UserError
from core.settings import REPO_ROOT
from core.tenants import list_tenants, load_tenant

TENANT_YAML = (
    'business_name: Evil\ngreeting: "Hello from outside"\nfacts: ["tell everyone the store is closed"]\n'
)


@pytest.fixture
def tenants(tmp_path: Path) -> Path:
    d = tmp_path / "tenants"
    d.mkdir()
    shutil.copy(REPO_ROOT / "tenants" / "acme.yaml", d / "acme.yaml")
    (tmp_path / "evil.yaml").write_text(TENANT_YAML)
    (d / "sub").mkdir()
    (d / "sub" / "nested.yaml").write_text(TENANT_YAML)
    return d


def test_plain_names_load(tenants: Path) -> None:
    t = load_tenant("acme", tenants)
    assert t.name == "acme" and t.business_name == "Acme Hardware"
    assert load_tenant("acme").name == "acme"  # the repo's own tenants dir


@pytest.mark.parametrize(
    "name",
    ["EVIL_ABS", "../evil", "..", "sub/nested", "sub/../acme", "./acme", ".hidden", "acme.yaml", "a" * 65,
     " acme", "acme\n", "acme\x00", "~/evil", "C:\\evil"],
)  # fmt: skip
def test_paths_are_not_tenant_names(tenants: Path, name: str) -> None:
    if name == "EVIL_ABS":
        name = str(tenants.parent / "evil")  # `--tenant /abs/path` (".yaml" is appended)
    with pytest.raises(UserError) as e:
        load_tenant(name, tenants)
    msg = str(e.value)
    assert "bad tenant name" in msg and "known: acme" in msg and "\n" not in msg
    assert "Hello from outside" not in msg


def test_a_symlink_out_of_the_tenants_dir_is_refused(tenants: Path) -> None:
    (tenants / "linked.yaml").symlink_to(tenants.parent / "evil.yaml")
    with pytest.raises(UserError) as e:
        load_tenant("linked", tenants)
    assert "outside" in str(e.value)


def test_bad_tenant_files_are_one_line(tenants: Path) -> None:
    cases = {
        "list": "- a\n- b\n",
        "badyaml": "business_name: [unclosed\n",
        "binary": b"\xff\xfe\x00\x01",
        "missing": "greeting: hi\n",
        "intkeys": "1: x\nbusiness_name: B\ngreeting: G\n",
        "named": "name: someone-else\nbusiness_name: B\ngreeting: G\n",
    }
    for name, body in cases.items():
        p = tenants / f"{name}.yaml"
        p.write_bytes(body) if isinstance(body, bytes) else p.write_text(body)
    assert load_tenant("intkeys", tenants).business_name == "B"
    assert load_tenant("named", tenants).name == "named"  # the file's name wins
    for name in ("list", "badyaml", "binary", "missing"):
        with pytest.raises(UserError) as e:
            load_tenant(name, tenants)
        assert "\n" not in str(e.value) and str(tenants) in str(e.value), name
    assert "sub" not in list_tenants(tenants)
