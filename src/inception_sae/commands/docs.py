"""docs/config.md: every setting of every stage (flag, ``run`` key, default, meaning), generated from the classes.

``PYTHONPATH=src python -m inception_sae.commands.docs > docs/config.md`` rewrites it; a test keeps it current.
"""

from __future__ import annotations

from typing import Any

import typer

HEADER = """# Settings: every stage's, in one place

Generated from the settings classes by `python -m inception_sae.commands.docs` (a test checks it is current).
Each setting has one name: the flag of its stage's command and, under the stage's section, the key of
`inception-sae run`'s config (`--set section.key=value`). A flag is the field name with dashes (`n_top` ->
`--n-top`); a yes/no setting is `--x/--no-x`; a field of a nested group is `--group.field` (`--render.param.size`,
key `featvis.render.param.size`); a list setting is given by repeating its flag (`--classes 208 --classes 209`);
a setting shown with no default is left out (None) unless given. `--weights --seed --device` are the model options
every model-using command shares (in `run` they are top-level keys); they are listed once, first.
"""


def _default(param: Any) -> str:
    value = param.default
    if value is None or value == []:
        return ""
    if isinstance(value, list):
        value = ", ".join(map(str, value))
    return f"`{value}`"


def config_markdown() -> str:
    """The text of docs/config.md."""
    from ..cli import app
    from ..pipeline.config import SECTIONS
    from .common import MODEL

    root, parts, model_done = typer.main.get_command(app), [HEADER], False
    for name, cmd in getattr(root, "commands", {}).items():
        for sub_name, sub in (getattr(cmd, "commands", None) or {name: cmd}).items():
            fn = getattr(sub.callback, "__wrapped__", sub.callback)
            if not hasattr(fn, "groups"):
                continue
            title = name if sub is cmd else f"{name} {sub_name}"
            parts.append(f"\n## `inception-sae {title}`\n")
            for group_name, group in fn.groups.items():
                if group.cls is MODEL.cls and model_done:
                    continue
                model_done = model_done or group.cls is MODEL.cls
                run_key = group.section in SECTIONS
                head = f"`run` key `{group.section}.…`" if run_key else "not in `run`'s config"
                parts.append(f"\n{group.cls.__name__} ({head}):\n\n| flag | default | meaning |\n| --- | --- | --- |\n")
                params = {p.name: p for p in sub.params}
                for flag in fn.flags[group_name]:
                    param = params[flag.parameter.name]
                    names = " ".join(f"`{n}`" for n in (*param.opts, *param.secondary_opts))
                    text = (param.help or "").replace("|", "\\|")
                    parts.append(f"| {names} | {_default(param)} | {text} |\n")
    return "".join(parts)


if __name__ == "__main__":
    print(config_markdown(), end="")
