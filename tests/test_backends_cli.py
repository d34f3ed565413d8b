"""``spine backends``, choosing a backend on ``spine run``, third-party backends through entry points,
and whole lanes on bubblewrap and on the remote base (local-remote)."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

from spine.adapters.bubblewrap import Bubblewrap

from tests.conftest import Spine, data_of, git, skip_unless_bubblewrap

NO_CREDENTIALS = {"E2B_API_KEY": "", "VERCEL_TOKEN": "", "VERCEL_OIDC_TOKEN": "", "SANDBOX_WORKER_URL": ""}


def _env(extra: dict[str, str] | None = None) -> dict[str, str]:
    return {**NO_CREDENTIALS, **(extra or {})}


def test_backends_lists_every_backend_and_why_it_is_unusable(spine: Spine, repo: Path) -> None:
    data = spine.json("backends", "--json", cwd=repo, env=_env())
    rows = {row["name"]: row for row in data["backends"]}
    assert data["default"] == "local-worktree"
    expected = {
        "local-worktree",
        "none",
        "bubblewrap",
        "docker",
        "local-remote",
        "e2b",
        "vercel-sandbox",
        "cloudflare-sandbox",
    }
    assert expected <= set(rows)
    assert rows["local-worktree"]["usable"] and rows["local-remote"]["usable"]
    assert rows["e2b"] == {**rows["e2b"], "usable": False, "source": "built-in"}
    # missing extra or missing credentials, whichever this machine lacks first
    assert "E2B_API_KEY" in rows["e2b"]["reason"] or "git-spine[e2b]" in rows["e2b"]["reason"]
    assert (
        "VERCEL" in rows["vercel-sandbox"]["reason"]
        or "git-spine[vercel]" in rows["vercel-sandbox"]["reason"]
    )
    assert "SANDBOX_WORKER_URL" in rows["cloudflare-sandbox"]["reason"]
    assert rows["bubblewrap"]["usable"] == (Bubblewrap().unavailable_reason() is None)


def test_backends_outside_a_repository(spine: Spine, tmp_path: Path) -> None:
    proc = spine("backends", cwd=tmp_path, env=_env())
    assert proc.returncode == 0, proc.stderr
    assert "local-worktree" in proc.stdout and "SANDBOX_WORKER_URL" in proc.stdout


def test_backends_with_names_is_a_usability_check(spine: Spine, repo: Path) -> None:
    assert spine("backends", "local-worktree", cwd=repo, env=_env()).returncode == 0
    unusable = spine("backends", "cloudflare-sandbox", cwd=repo, env=_env())
    assert unusable.returncode == 3 and "SANDBOX_WORKER_URL" in unusable.stdout
    unknown = spine("backends", "nosuch", cwd=repo, env=_env())
    assert unknown.returncode == 2 and "unknown backend 'nosuch'" in unknown.stderr


def _no_lane_was_created(repo: Path) -> None:
    assert git("branch", "--list", "spine/*", cwd=repo) == ""
    assert not (repo / ".git" / "spine" / "worktrees").exists()
    assert not (repo / ".git" / "spine" / "runs").exists()


def test_unusable_backend_fails_before_anything_exists(spine: Spine, repo: Path) -> None:
    proc = spine("run", "--backend", "cloudflare-sandbox", "try", "--", "true", cwd=repo, env=_env())
    assert proc.returncode == 3
    assert "backend 'cloudflare-sandbox' is not usable here: no sandbox bridge URL" in proc.stderr
    assert "Traceback" not in proc.stderr
    _no_lane_was_created(repo)


def test_misspelled_backend_is_a_usage_error(spine: Spine, repo: Path) -> None:
    proc = spine("run", "--backend", "bubblewarp", "try", "--", "true", cwd=repo, env=_env())
    assert proc.returncode == 2
    assert "did you mean 'bubblewrap'?" in proc.stderr
    _no_lane_was_created(repo)


def _plugin(tmp_path: Path, module_source: str, target: str) -> dict[str, str]:
    """A third-party package (module + dist-info with an entry point) on PYTHONPATH.

    Only a new interpreter reads PYTHONPATH, so spine runs as a subprocess with this environment.
    """
    site = tmp_path / "site"
    (site / "fancy_backend-0.1.dist-info").mkdir(parents=True)
    (site / "fancy_backend.py").write_text(textwrap.dedent(module_source))
    (site / "fancy_backend-0.1.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: fancy-backend\nVersion: 0.1\n"
    )
    (site / "fancy_backend-0.1.dist-info" / "entry_points.txt").write_text(
        f"[spine.backends]\nfancy = {target}\n"
    )
    path = os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")]))
    return _env({"PYTHONPATH": path})


def test_third_party_backend_through_the_entry_point(spine: Spine, repo: Path, tmp_path: Path) -> None:
    env = _plugin(
        tmp_path,
        '''
        """A plugin backend: the local one, announcing itself."""
        from spine.backends.local import LocalWorktree

        class Fancy(LocalWorktree):
            """Fancy local lanes from a separate package."""

            name = "fancy"

            def exec(self, handle, argv, **kw):
                kw["env"] = {**kw["env"], "FANCY": "yes"}
                return super().exec(handle, argv, **kw)
        ''',
        "fancy_backend:Fancy",
    )
    rows = {
        r["name"]: r for r in spine.json("backends", "--json", cwd=repo, env=env, subprocess=True)["backends"]
    }
    assert rows["fancy"]["source"] == "plugin" and rows["fancy"]["usable"]
    assert rows["fancy"]["description"] == "Fancy local lanes from a separate package."
    result = spine.json(
        "run",
        "--json",
        "--backend",
        "fancy",
        "plug",
        "--",
        "sh",
        "-c",
        'echo "$FANCY" > f.txt',
        cwd=repo,
        env=env,
        subprocess=True,
    )
    assert result["sandboxBackend"] == "fancy" and result["status"] == "succeeded"
    assert git("show", f"{result['branch']}:f.txt", cwd=repo) == "yes"


def test_broken_plugin_is_reported_not_raised(spine: Spine, repo: Path, tmp_path: Path) -> None:
    env = _plugin(tmp_path, "import not_a_module_anywhere\n", "fancy_backend:Fancy")
    proc = spine("backends", "--json", cwd=repo, env=env, subprocess=True)
    assert proc.returncode == 0, proc.stderr
    rows = {r["name"]: r for r in data_of(proc)["backends"]}
    assert not rows["fancy"]["usable"] and "not_a_module_anywhere" in rows["fancy"]["reason"]
    run = spine("run", "--backend", "fancy", "x", "--", "true", cwd=repo, env=env, subprocess=True)
    assert run.returncode == 3 and "cannot be loaded" in run.stderr


def test_a_lane_on_local_remote_comes_back_as_a_commit(spine: Spine, repo: Path) -> None:
    script = "git mv src/other.txt src/moved.txt 2>/dev/null || mv src/other.txt src/moved.txt; printf '\\000\\377' > b.bin; chmod +x README.md"
    result = spine.json(
        "run", "--json", "--backend", "local-remote", "remote", "--", "sh", "-c", script, cwd=repo, env=_env()
    )
    assert result["status"] == "succeeded", result
    assert result["providerRunId"].startswith("local-spine-remote-")
    shown = git("show", "--summary", "--format=", result["branch"], cwd=repo)
    assert "rename src/{other.txt => moved.txt}" in shown
    assert "create mode 100644 b.bin" in shown
    assert "mode change 100644 => 100755 README.md" in shown


def test_a_lane_on_bubblewrap_is_committed_outside_the_sandbox(spine: Spine, repo: Path) -> None:
    skip_unless_bubblewrap()
    script = "echo made > made.txt; git status --short; git log --oneline | wc -l"
    result = spine.json(
        "run", "--json", "--backend", "bubblewrap", "bw", "--", "sh", "-c", script, cwd=repo, env=_env()
    )
    assert result["status"] == "succeeded", result
    assert result["sandboxBackend"] == "bubblewrap"
    assert result["outputTail"] == ["?? made.txt", "2"]  # git works read-only inside
    assert git("show", f"{result['branch']}:made.txt", cwd=repo) == "made"
