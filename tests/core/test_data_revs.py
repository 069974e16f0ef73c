"""`data.rev` is exact: data is pulled as DVC recorded it at that rev, not at the code's."""

from __future__ import annotations

import hashlib
from pathlib import Path

from tests.core.conftest import Api, git

SHOW = "import pathlib; print('DATA', pathlib.Path('data/d.csv').read_text().strip())\n"


def data_repo(root: Path) -> tuple[Path, str, str]:
    """A git + DVC repo whose data/d.csv is 'old' at tag vA and 'new' at main; both pushed.

    Returns the repo and the md5s of the old and the new data.
    """
    from dvc.repo import Repo as DvcRepo

    repo, remote = root / "repo", root / "dvc-remote"
    (repo / "data").mkdir(parents=True)
    remote.mkdir()
    git(repo, "init", "-q", "-b", "main")
    git(repo, "config", "user.email", "t@example.invalid")
    git(repo, "config", "user.name", "test")
    dvc = DvcRepo.init(str(repo))
    with dvc.config.edit() as conf:
        conf["remote"]["storage"] = {"url": str(remote.resolve())}
        conf["core"]["remote"] = "storage"
    (repo / "show.py").write_text(SHOW)
    md5s = []
    for tag, content in (("vA", "old"), (None, "new")):
        (repo / "data" / "d.csv").write_text(content + "\n")
        md5s.append(hashlib.md5((content + "\n").encode()).hexdigest())
        dvc.add(str((repo / "data" / "d.csv").resolve()))
        dvc.push()
        git(repo, "add", "-A")
        git(repo, "commit", "-qm", f"data {content}")
        if tag:
            git(repo, "tag", tag)
    dvc.close()
    return repo, md5s[0], md5s[1]


def test_data_is_pulled_at_its_own_rev_when_the_code_ref_differs(api: Api, tmp_path: Path) -> None:
    repo, old_md5, new_md5 = data_repo(tmp_path)
    assert old_md5 != new_md5
    run_id = api.run()
    task = api.submit(
        run_id,
        "show",
        command=["python", "show.py"],
        code={"repo": str(repo), "ref": "main"},
        data={"paths": ["data/d.csv"], "rev": "vA"},
    )
    done = api.wait(task["id"])
    assert done["status"] == "succeeded", (done["reason"], api.logs(task["id"]))
    assert any(line["message"] == "DATA old" for line in api.logs(task["id"]))
    lineage = api.client.get(f"/v1/tasks/{task['id']}/lineage").json()
    assert lineage["code"]["commit"] == git(repo, "rev-parse", "main")
    assert [(d["path"], d["md5"], d["rev"]) for d in lineage["data"]] == [
        ("data/d.csv", old_md5, git(repo, "rev-parse", "vA^{commit}"))
    ]


def test_data_without_a_rev_is_pulled_at_the_code_commit(api: Api, tmp_path: Path) -> None:
    repo, _old_md5, new_md5 = data_repo(tmp_path)
    run_id = api.run()
    task = api.submit(
        run_id,
        "show",
        command=["python", "show.py"],
        code={"repo": str(repo), "ref": "main"},
        data={"paths": ["data/d.csv"]},
    )
    assert api.wait(task["id"])["status"] == "succeeded", api.logs(task["id"])
    assert any(line["message"] == "DATA new" for line in api.logs(task["id"]))
    lineage = api.client.get(f"/v1/tasks/{task['id']}/lineage").json()
    assert [(d["md5"], d["rev"]) for d in lineage["data"]] == [
        (new_md5, git(repo, "rev-parse", "main"))
    ]
