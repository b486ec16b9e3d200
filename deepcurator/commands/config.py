"""Print the effective configuration (secrets shown as ***) and where each value came from:
default, the config file, an environment variable. The file read is the first of --config
FILE, $DEEPCURATOR_CONFIG, ./config.yml and config.yml in the user's config folder."""

from __future__ import annotations

import argparse
import json

import yaml

from deepcurator.config import Config


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true",
                        help="print JSON: the file, and each key's value and origin")


def _yaml_value(value: object) -> str:
    """``value`` as it would be written in config.yml (strings that YAML would read as
    something else, like ``'0755'``, quoted)."""
    text = yaml.safe_dump(value, default_flow_style=True, allow_unicode=True).strip()
    return text.removesuffix("\n...").removesuffix("...").strip()


def run(args: argparse.Namespace, cfg: Config) -> int:
    from deepcurator import __version__
    from deepcurator.config import search_order

    file, how = cfg.file
    values = cfg.to_dict(redact=True)
    if args.json:
        print(json.dumps({
            "file": str(file) if file else None, "found_by": how or None, "search_order": search_order(),
            "values": {section: {key: {"value": value, "from": cfg.origin(f"{section}.{key}")}
                                 for key, value in keys.items()} for section, keys in values.items()},
        }, indent=2))
        return 0
    print(f"# deepcurator {__version__}: the effective configuration (secrets shown as ***)")
    print(f"# file: {file} (found by {how})" if file else "# file: none")
    print(f"#   looked for, in order: {', '.join(search_order())}")
    for section, keys in values.items():
        print(f"{section}:")
        for key, value in keys.items():
            line = f"  {key}: {_yaml_value(value)}"
            print(f"{line:<44} # {cfg.origin(f'{section}.{key}')}")
    return 0
