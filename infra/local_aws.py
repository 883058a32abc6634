#!/usr/bin/env python3
"""Bootstrap WeConnect's AWS resources on a local AWS-compatible endpoint (moto_server).

    moto_server -H 127.0.0.1 -p 5000 &
    eval "$(python3 infra/local_aws.py --endpoint http://127.0.0.1:5000 --name dev)"

Creates the table from template.yaml's `Table` resource (the same definition the tests use),
the job queue with a redrive policy to its dead-letter queue, and the event bus, then prints
the environment variables the functions read (TABLE_NAME, QUEUE_URL, QUEUE_ARN, DLQ_URL,
EVENT_BUS_NAME, AWS_ENDPOINT_URL, region and dummy credentials). Needs boto3 and PyYAML
(both come with moto[server] and cfn-lint). Idempotent: existing resources are reused.
"""

import argparse
import json
import os
import shlex
import sys

import boto3
import yaml


class _CfnLoader(yaml.SafeLoader):
    """Reads CloudFormation YAML: intrinsic-function tags (!Ref, !GetAtt, ...) become plain data."""


def _tag(loader, suffix, node):
    if isinstance(node, yaml.ScalarNode):
        return {suffix: loader.construct_scalar(node)}
    if isinstance(node, yaml.SequenceNode):
        return {suffix: loader.construct_sequence(node)}
    return {suffix: loader.construct_mapping(node)}


_CfnLoader.add_multi_constructor("!", _tag)


def table_properties(template):
    with open(template, encoding="utf-8") as f:
        doc = yaml.load(f, Loader=_CfnLoader)
    return doc["Resources"]["Table"]["Properties"]


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--endpoint", default=os.environ.get("AWS_ENDPOINT_URL", "http://127.0.0.1:5000"))
    p.add_argument("--region", default=os.environ.get("AWS_REGION", "us-east-1"))
    p.add_argument("--name", default="weconnect-dev", help="prefix of the resource names")
    p.add_argument("--template", default=os.path.join(here, "..", "template.yaml"))
    p.add_argument("--max-receive-count", type=int, default=5)
    args = p.parse_args()

    session = boto3.session.Session(
        aws_access_key_id=os.environ.get("AWS_ACCESS_KEY_ID", "testing"),
        aws_secret_access_key=os.environ.get("AWS_SECRET_ACCESS_KEY", "testing"),
        region_name=args.region,
    )
    ddb = session.client("dynamodb", endpoint_url=args.endpoint)
    sqs = session.client("sqs", endpoint_url=args.endpoint)
    events = session.client("events", endpoint_url=args.endpoint)

    table = f"{args.name}-table"
    props = table_properties(args.template)
    if table not in ddb.list_tables()["TableNames"]:
        create = {k: props[k] for k in ("AttributeDefinitions", "KeySchema", "GlobalSecondaryIndexes", "BillingMode") if k in props}
        ddb.create_table(TableName=table, **create)
        ttl = props.get("TimeToLiveSpecification")
        if ttl:
            ddb.update_time_to_live(TableName=table, TimeToLiveSpecification=ttl)

    dlq_url = sqs.create_queue(QueueName=f"{args.name}-dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    redrive = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(args.max_receive_count)})
    queue_url = sqs.create_queue(QueueName=f"{args.name}-jobs", Attributes={"RedrivePolicy": redrive})["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]

    bus = f"{args.name}-events"
    if bus not in [b["Name"] for b in events.list_event_buses()["EventBuses"]]:
        events.create_event_bus(Name=bus)

    env = {
        "TABLE_NAME": table,
        "QUEUE_URL": queue_url,
        "QUEUE_ARN": queue_arn,
        "DLQ_URL": dlq_url,
        "EVENT_BUS_NAME": bus,
        "AWS_ENDPOINT_URL": args.endpoint,
        "AWS_REGION": args.region,
        "AWS_ACCESS_KEY_ID": session.get_credentials().access_key,
        "AWS_SECRET_ACCESS_KEY": session.get_credentials().secret_key,
    }
    for k, v in env.items():
        print(f"export {k}={shlex.quote(v)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
