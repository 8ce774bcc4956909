#!/usr/bin/env python3
"""Checks the daemon's ECS documents and OCSF events against the schemas' own definitions.

    validate_schemas.py ecs  SCHEMAS_DIR FILE
    validate_schemas.py ocsf SCHEMAS_DIR FILE [VERSION ...]

FILE holds one JSON document per line. SCHEMAS_DIR is ../shared/schemas of the workspace
(Elastic's ECS 9.4.0 `ecs/ecs_flat.yml`; OCSF 1.3.0-1.8.0 resolved for classes 2004 and 2005,
`ocsf/ocsf-VERSION.json`). Every problem is printed, one per line, prefixed with the line
number of the document; the exit status is 1 when there is any.

ECS: every field is an ECS field or under the custom namespace `defender`, with the ECS type
(arrays where ECS normalizes to one, and only there), allowed values, `event.type` values
that the document's `event.category` expects, and the required fields present.

OCSF: the class's required attributes (those of a profile only when the event declares it in
`metadata.profiles`), no attribute the class or object does not define, types (with their
regular expressions and lengths), enums and their captions, the objects' constraints
(`at_least_one`, `just_one`), `type_uid` = class * 100 + activity. Detection Findings are also
read by py-ocsf-models' `DetectionFinding` (an independent implementation), which must accept
them.
"""
import ipaddress
import json
import re
import sys

import yaml

CUSTOM_NAMESPACE = "defender"


def load_lines(path):
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


# MARK: ECS

ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")
STRING_TYPES = {"keyword", "constant_keyword", "wildcard", "text", "match_only_text"}
INTEGER_TYPES = {"long", "integer", "short", "byte", "unsigned_long"}
FLOAT_TYPES = {"float", "double", "half_float", "scaled_float"}


def ecs_value_problem(field, spec, value):
    kind = spec["type"]
    if kind in STRING_TYPES:
        ok = isinstance(value, str)
    elif kind in INTEGER_TYPES:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif kind in FLOAT_TYPES:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    elif kind == "boolean":
        ok = isinstance(value, bool)
    elif kind == "date":
        ok = (isinstance(value, str) and ISO_DATE.match(value) is not None) or (isinstance(value, int) and not isinstance(value, bool))
    elif kind == "ip":
        try:
            ipaddress.ip_address(value)
            ok = True
        except (ValueError, TypeError):
            ok = False
    elif kind in ("object", "flattened"):
        ok = isinstance(value, dict)
    elif kind == "nested":
        ok = isinstance(value, dict)
    else:
        ok = True
    if not ok:
        return f"{field}: {json.dumps(value)[:80]} is not of ECS type {kind}"
    allowed = [entry["name"] for entry in spec.get("allowed_values") or []]
    if allowed and value not in allowed:
        return f"{field}: {value!r} is not one of ECS's allowed values"
    return None


def check_ecs(schemas, documents):
    with open(f"{schemas}/ecs/ecs_flat.yml", encoding="utf-8") as handle:
        # libyaml's loader when PyYAML has it: the 2,600 fields load in a fraction of the time.
        fields = yaml.load(handle, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    prefixes = set()
    for name in fields:
        parts = name.split(".")
        for end in range(1, len(parts)):
            prefixes.add(".".join(parts[:end]))
    required = [name for name, spec in fields.items() if spec.get("required")]
    problems = []
    for number, document in enumerate(documents, 1):
        def walk(path, value):
            if path == CUSTOM_NAMESPACE or path.startswith(CUSTOM_NAMESPACE + "."):
                return
            spec = fields.get(path)
            if spec is None:
                if isinstance(value, dict) and (path == "" or path in prefixes):
                    for key, child in value.items():
                        walk(f"{path}.{key}" if path else key, child)
                else:
                    problems.append(f"{number}: {path} is not an ECS field (nor under {CUSTOM_NAMESPACE}.)")
                return
            is_array = "array" in (spec.get("normalize") or [])
            if isinstance(value, list) and spec["type"] != "nested":
                if not is_array:
                    problems.append(f"{number}: {path}: an array where ECS expects one value")
                values = value
            else:
                if is_array:
                    problems.append(f"{number}: {path}: ECS normalizes it to an array")
                values = value if isinstance(value, list) else [value]
            for item in values:
                problem = ecs_value_problem(path, spec, item)
                if problem:
                    problems.append(f"{number}: {problem}")

        walk("", document)
        flat = {}

        def flatten(path, value):
            if isinstance(value, dict) and path not in fields:
                for key, child in value.items():
                    flatten(f"{path}.{key}" if path else key, child)
            else:
                flat[path] = value

        flatten("", document)
        for name in required:
            if name not in flat:
                problems.append(f"{number}: {name} is required by ECS and missing")
        categories = flat.get("event.category") or []
        expected = set()
        for entry in fields["event.category"]["allowed_values"]:
            if entry["name"] in categories:
                expected.update(entry.get("expected_event_types") or [])
        for event_type in flat.get("event.type") or []:
            if categories and event_type not in expected:
                problems.append(f"{number}: event.type {event_type!r} is not expected with event.category {categories}")
    return problems


# MARK: OCSF

class OCSFSchema:
    def __init__(self, path):
        with open(path, encoding="utf-8") as handle:
            schema = json.load(handle)
        self.version = schema["version"]
        self.classes = schema["classes"]
        self.objects = schema["objects"]
        self.types = schema["types"]

    def requires(self, definition, location):
        """Whether the attribute at `location` (names from the class down) is required."""
        for index, name in enumerate(location):
            spec = definition["attributes"].get(name)
            if spec is None:
                return False
            if index == len(location) - 1:
                return spec.get("requirement") == "required"
            definition = self.objects.get(spec["type"])
            if definition is None:
                return False
        return False

    def base(self, type_name):
        seen = set()
        while type_name in self.types and type_name not in seen:
            seen.add(type_name)
            base = self.types[type_name].get("base", type_name)
            if base == type_name:
                break
            type_name = base
        return type_name

    def type_rules(self, type_name):
        """The regular expressions and length limits of a type and its bases."""
        rules = []
        while type_name in self.types:
            entry = self.types[type_name]
            rules.append(entry)
            base = entry.get("base")
            if not base or base == type_name:
                break
            type_name = base
        return rules


def check_ocsf_value(schema, path, spec, value, profiles, problems):
    type_name = spec["type"]
    if spec.get("is_array"):
        if not isinstance(value, list):
            problems.append(f"{path}: an array is required")
            return
        for index, item in enumerate(value):
            check_ocsf_scalar(schema, f"{path}[{index}]", spec, item, profiles, problems)
    else:
        if isinstance(value, list):
            problems.append(f"{path}: one value is required, not an array")
            return
        check_ocsf_scalar(schema, path, spec, value, profiles, problems)


def check_ocsf_scalar(schema, path, spec, value, profiles, problems):
    type_name = spec["type"]
    if type_name in schema.objects:
        check_ocsf_object(schema, path, schema.objects[type_name], value, profiles, problems)
        return
    base = schema.base(type_name)
    if base == "json_t":
        return
    if base in ("integer_t", "long_t"):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif base == "float_t":
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    elif base == "boolean_t":
        ok = isinstance(value, bool)
    elif base == "string_t":
        ok = isinstance(value, str)
    elif base == "object_t":
        ok = isinstance(value, dict)
    else:
        ok = True
    if not ok:
        problems.append(f"{path}: {json.dumps(value)[:80]} is not of type {type_name} ({base})")
        return
    for rule in schema.type_rules(type_name):
        if "regex" in rule and isinstance(value, str) and re.search(rule["regex"], value) is None:
            problems.append(f"{path}: {value!r} does not match {type_name}'s pattern")
        if "max_len" in rule and isinstance(value, str) and len(value) > rule["max_len"]:
            problems.append(f"{path}: longer than {type_name}'s {rule['max_len']} characters")
        if "range" in rule and isinstance(value, (int, float)):
            low, high = rule["range"]
            if not low <= value <= high:
                problems.append(f"{path}: {value} is outside {type_name}'s range {low}..{high}")
    enum = spec.get("enum")
    if enum is not None and str(value) not in enum:
        problems.append(f"{path}: {value!r} is not in the enum ({', '.join(sorted(enum, key=lambda k: int(k) if k.lstrip('-').isdigit() else 0))})")


def check_ocsf_object(schema, path, definition, value, profiles, problems):
    if not isinstance(value, dict):
        problems.append(f"{path}: an object is required")
        return
    attributes = definition["attributes"]
    for name, child in value.items():
        spec = attributes.get(name)
        where = f"{path}.{name}" if path else name
        if spec is None:
            problems.append(f"{where}: not an attribute of {definition.get('name', path or 'the class')}")
            continue
        profile = spec.get("profile")
        if profile and profile not in profiles:
            problems.append(f"{where}: belongs to the profile {profile}, which the event does not declare")
        check_ocsf_value(schema, where, spec, child, profiles, problems)
        sibling = spec.get("sibling")
        enum = spec.get("enum")
        if sibling and enum and sibling in value and str(child) in enum and str(child) != "99":
            caption = enum[str(child)]
            caption = caption.get("caption") if isinstance(caption, dict) else caption
            if value[sibling] != caption:
                problems.append(f"{where}: {sibling} is {value[sibling]!r}, the caption of {child} is {caption!r}")
    for name, spec in attributes.items():
        if spec.get("requirement") != "required" or name in value:
            continue
        profile = spec.get("profile")
        if profile and profile not in profiles:
            continue
        problems.append(f"{path + '.' if path else ''}{name}: required and missing")
    constraints = definition.get("constraints") or {}
    for names in [constraints.get("at_least_one")] if constraints.get("at_least_one") else []:
        if not any(name in value for name in names):
            problems.append(f"{path or 'the event'}: needs at least one of {', '.join(names)}")
    for names in [constraints.get("just_one")] if constraints.get("just_one") else []:
        if sum(name in value for name in names) != 1:
            problems.append(f"{path or 'the event'}: needs exactly one of {', '.join(names)}")


def check_ocsf(schemas, documents, versions):
    problems = []
    for version in versions:
        schema = OCSFSchema(f"{schemas}/ocsf/ocsf-{version}.json")
        for number, event in enumerate(documents, 1):
            found = []
            definition = schema.classes.get(str(event.get("class_uid")))
            if definition is None:
                problems.append(f"{number}: OCSF {version}: class_uid {event.get('class_uid')!r} is not Detection Finding or Incident Finding")
                continue
            profiles = set((event.get("metadata") or {}).get("profiles") or [])
            check_ocsf_object(schema, "", definition, event, profiles, found)
            if event.get("type_uid") != event.get("class_uid", 0) * 100 + event.get("activity_id", -1):
                found.append("type_uid is not class_uid * 100 + activity_id")
            if event.get("category_uid") != definition.get("category_uid", 2):
                found.append("category_uid is not the class's")
            problems += [f"{number}: OCSF {version}: {problem}" for problem in found]
    problems += check_with_py_ocsf_models(documents, OCSFSchema(f"{schemas}/ocsf/ocsf-{versions[0]}.json"))
    return problems


def check_with_py_ocsf_models(documents, schema):
    """py-ocsf-models implements Detection Finding (not Incident Finding): each one must load.
    Its models require some attributes that the schema only recommends (a device's `region`
    and `ip`, a technique's `name`); where they disagree the schema wins, so a "missing" error
    counts only for an attribute the schema requires."""
    try:
        from py_ocsf_models.events.findings.detection_finding import DetectionFinding
        from pydantic import ValidationError
    except ImportError as error:
        return [f"py-ocsf-models is not installed ({error}): pip install py-ocsf-models"]
    problems = []
    for number, event in enumerate(documents, 1):
        if event.get("class_uid") != 2004:
            continue
        try:
            DetectionFinding.model_validate(event)
        except ValidationError as error:
            for entry in error.errors():
                location = [part for part in entry["loc"] if isinstance(part, str)]
                if entry["type"] == "missing" and not schema.requires(schema.classes["2004"], location):
                    continue
                problems.append(f"{number}: py-ocsf-models refused it: {'.'.join(map(str, entry['loc']))}: {entry['msg']}")
    return problems


def main():
    schema, schemas, path = sys.argv[1], sys.argv[2], sys.argv[3]
    documents = load_lines(path)
    if not documents:
        print("no documents to check")
        return 1
    if schema == "ecs":
        problems = check_ecs(schemas, documents)
    else:
        versions = sys.argv[4:] or ["1.3.0", "1.4.0", "1.5.0", "1.6.0", "1.7.0", "1.8.0"]
        problems = check_ocsf(schemas, documents, versions)
    for problem in problems:
        print(problem)
    print(f"{len(documents)} documents, {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
