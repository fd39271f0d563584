"""Issue 16 item 11 (part): `init` spells a Chinese name in pinyin (slug, module, class)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

CLI = Path(sys.executable).with_name("procvision-cli")


def test_init_uses_pinyin_for_a_chinese_name(tmp_path: Path) -> None:
    target = tmp_path / "proj"
    made = subprocess.run(
        [str(CLI), "init", "螺丝检测", "-d", str(target)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert made.returncode == 0, made.stderr
    manifest = json.loads((target / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["name"].startswith("luo-si-jian-ce"), manifest
    assert manifest["entry_point"] == "luo_si_jian_ce.main:LuoSiJianCeAlgorithm", manifest
    assert (target / "luo_si_jian_ce").is_dir()
