"""Checks the EB emulator's answers against botocore's own Elastic Beanstalk service model.

Reads from stdin a JSON list of calls ({"action": ..., "params": {...}}), sends each one raw
(form-encoded Query protocol, as every AWS SDK does) to the endpoint given as argv[1], and
walks every element of every answer against the model's output shape: element names,
types (string, integer, long, boolean, timestamp, double), enum values, lists. Then makes the
same call through a real botocore client, which must parse it. Prints a JSON list of problems
(empty when all is well) and exits 1 when there are any.

Where botocore's model is known to differ from what EB really sends, the three tables below
say what is checked instead, each with its evidence. The report lists the ones that were
used: an entry no answer needs any more is stale, and the suite fails on it.
"""
import json
import sys
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ET
from datetime import datetime

import botocore.session
from botocore.config import Config

# Enums EB answers in upper case: the value must be a model value upper-cased, exactly.
# ApplicationVersionStatus: the model says Processed, Unprocessed...; EB sends PROCESSED,
# UNPROCESSED, FAILED, PROCESSING (AWS's API reference samples of
# DescribeApplicationVersions show `<Status>PROCESSED</Status>`, the AWS CLI prints upper case).
UPPER_ENUMS = {"ApplicationVersionStatus"}

# Members EB sends that botocore's model lacks, checked against the named shape of the model.
# ConfigurationSettingsDescription/Tier: the EB CLI's own bundled model (awsebcli:
# ebcli/lib/botocoredata/elasticbeanstalk/2010-12-01/service-2.json) has it, and `eb health`
# reads it (ebcli/display/screen.py: env_data['Tier']['Name']; KeyError without it).
MEMBER_SHAPES = {("ConfigurationSettingsDescription", "Tier"): "EnvironmentTier"}

# Elements whose model enum is the wrong one, checked against the named enum of the model.
# DescribeEnvironmentHealth/Status: the model types it EnvironmentHealth (Green, Yellow, Red,
# Grey), in botocore and in the EB CLI's bundled model alike, while the API reference
# describes it as "the environment's operational status. Ready, Launching, Updating,
# Terminating, or Terminated", which is what EB sends (the colour is in Color). The
# environment's own Status (DescribeEnvironments) matches the model and needs no entry.
PATH_ENUMS = {"DescribeEnvironmentHealth/Status": "EnvironmentStatus"}

NS = "{http://elasticbeanstalk.amazonaws.com/docs/2010-12-01/}"


def strip(tag):
    return tag[len(NS):] if tag.startswith(NS) else tag


def check(node, shape, path, problems, model, used):
    t = shape.type_name
    if t == "structure":
        names = {}
        for name, member in shape.members.items():
            names[member.serialization.get("name", name)] = (name, member)
        for child in node:
            tag = strip(child.tag)
            if tag not in names:
                instead = MEMBER_SHAPES.get((shape.name, tag))
                if instead is None:
                    problems.append(f"{path}/{tag}: not a member of {shape.name}")
                    continue
                used.add(f"member {shape.name}/{tag}")
                check(child, model.shape_for(instead), f"{path}/{tag}", problems, model, used)
                continue
            check(child, names[tag][1], f"{path}/{tag}", problems, model, used)
    elif t == "list":
        for i, child in enumerate(node):
            if strip(child.tag) != shape.member.serialization.get("name", "member"):
                problems.append(f"{path}/{strip(child.tag)}: a list item must be <member>")
            check(child, shape.member, f"{path}[{i}]", problems, model, used)
    elif t == "map":
        problems.append(f"{path}: maps are not expected in EB answers")
    else:
        text = node.text or ""
        if len(node):
            problems.append(f"{path}: {t} with child elements")
        try:
            if t in ("integer", "long"):
                int(text)
            elif t == "double" or t == "float":
                float(text)
            elif t == "boolean" and text not in ("true", "false"):
                raise ValueError(text)
            elif t == "timestamp":
                datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            problems.append(f"{path}: {text!r} is not a {t}")
        name = shape.name
        enum = shape.metadata.get("enum")
        # An allowance counts as needed only when the model's own enum would refuse the value.
        if path in PATH_ENUMS:
            if not enum or text not in enum:
                used.add(f"path {path}")
            name = PATH_ENUMS[path]
            enum = model.shape_for(name).enum
        elif enum and name in UPPER_ENUMS and text not in enum:
            used.add(f"enum {name}")
            enum = [e.upper() for e in enum]
        if enum and text not in enum:
            problems.append(f"{path}: {text!r} is not one of {name} {enum}")


def main():
    endpoint = sys.argv[1]
    calls = json.load(sys.stdin)
    session = botocore.session.get_session()
    model = session.get_service_model("elasticbeanstalk")
    client = session.create_client(
        "elasticbeanstalk", region_name="us-west-2", endpoint_url=endpoint,
        aws_access_key_id="testing", aws_secret_access_key="testing",
        config=Config(retries={"max_attempts": 1}),
    )
    problems = []
    seen = set()
    used = set()
    for call in calls:
        action, params = call["action"], call["params"]
        seen.add(action)
        op = model.operation_model(action)
        body = urllib.parse.urlencode({"Action": action, "Version": "2010-12-01", **params})
        req = urllib.request.Request(endpoint, data=body.encode(), method="POST",
                                     headers={"Content-Type": "application/x-www-form-urlencoded"})
        try:
            with urllib.request.urlopen(req) as resp:
                raw, date = resp.read(), resp.headers.get("Date")
        except urllib.error.HTTPError as e:
            problems.append(f"{action}: HTTP {e.code}: {e.read()[:300]!r}")
            continue
        if not date:
            problems.append(f"{action}: no Date header")
        root = ET.fromstring(raw)
        if strip(root.tag) != f"{action}Response":
            problems.append(f"{action}: root element {strip(root.tag)}")
            continue
        result = root.find(f"{NS}{action}Result")
        if op.output_shape is not None:
            if result is None:
                problems.append(f"{action}: no {action}Result")
            else:
                check(result, op.output_shape, action, problems, model, used)
        if root.find(f"{NS}ResponseMetadata/{NS}RequestId") is None:
            problems.append(f"{action}: no ResponseMetadata/RequestId")
        # The real client must parse it (and accept our parameters).
        py = botocore.xform_name(action)
        kwargs = call.get("botocore", {})
        try:
            getattr(client, py)(**kwargs)
        except Exception as e:  # noqa: BLE001 - every failure is a finding
            if not call.get("error"):
                problems.append(f"{action}: botocore: {e}")
    allowances = {f"enum {n}" for n in UPPER_ENUMS}
    allowances |= {f"member {s}/{m}" for s, m in MEMBER_SHAPES}
    allowances |= {f"path {p}" for p in PATH_ENUMS}
    for stale in sorted(allowances - used):
        problems.append(f"allowance {stale} was not needed by any answer: remove it")
    print(json.dumps({"problems": problems, "actions": sorted(seen), "allowances": sorted(used)}))
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
