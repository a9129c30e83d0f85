"""Topic and group administration as typed records: what Bus.describe_topic,
list_groups, describe_group and reset_offsets return, built from the supervisor's
replies. The CLI (cli/topics.py, cli/groups.py) prints these same records."""
from typing import Any, Dict, List, Mapping, Optional, Union

from ._types import (GroupInfo, GroupMemberInfo, GroupPartition, PartitionDescription, TopicDescription,
                     TopicInfo, TopicPartition)

# What reset_offsets moves a group to: "earliest", "latest", or an offset.
ResetTarget = Union[str, int]


def topic_description(reply: Mapping[str, Any]) -> TopicDescription:
    partitions = []
    for row in reply["partitions"]:
        row = dict(row)
        row["damage"] = tuple(row.get("damage") or ())
        partitions.append(PartitionDescription(**row))
    return TopicDescription(TopicInfo(**reply["topic"]), reply["created_ns"], reply["max_record_bytes"],
                            tuple(partitions))


def group_info(reply: Mapping[str, Any]) -> GroupInfo:
    members = tuple(GroupMemberInfo(m["member_id"], m["pid"], tuple(m["topics"]),
                                    tuple(TopicPartition(t, p) for t, p in m["assignment"]), m["idle_ms"])
                    for m in reply["members"])
    partitions = {TopicPartition(p["topic"], p["partition"]):
                  GroupPartition(p["committed"], p["end_offset"], p["lag"], p["member_id"], p["pid"])
                  for p in reply["partitions"]}
    return GroupInfo(reply["group"], reply["generation"], members, partitions, reply["state"],
                     reply["strategy"], reply["sticky"], reply.get("error"))


def group_info_json(info: GroupInfo) -> Dict[str, Any]:
    """The JSON `shmbus groups describe --json` prints (the supervisor's shape)."""
    return {
        "group": info.group, "state": info.state, "generation": info.generation, "strategy": info.strategy,
        "sticky": info.sticky,
        "members": [{"member_id": m.member_id, "pid": m.pid, "topics": list(m.topics),
                     "assignment": [list(tp) for tp in m.assignment], "idle_ms": m.idle_ms}
                    for m in info.members],
        "partitions": [{"topic": tp.topic, "partition": tp.partition, "committed": p.committed,
                        "end_offset": p.end_offset, "lag": p.lag, "member_id": p.member, "pid": p.pid}
                       for tp, p in info.partitions.items()],
        "error": info.error,
    }


def reset_request(to: ResetTarget, topics: Optional[List[str]]) -> Dict[str, Any]:
    """The supervisor's reset_group_offsets arguments for a target: "earliest", "latest" or
    an offset (clamped to what each partition holds, as Kafka's tool does)."""
    if isinstance(to, bool) or not isinstance(to, (str, int)):
        raise TypeError(f"reset to must be 'earliest', 'latest' or an offset, not {to!r}")
    if isinstance(to, str) and to not in ("earliest", "latest"):
        raise ValueError(f"reset to must be 'earliest', 'latest' or an offset, got {to!r}")
    if topics is not None:
        if isinstance(topics, str):
            topics = [topics]
        topics = list(topics)
    if isinstance(to, int):
        return {"to": "offset", "offset": to, "topics": topics}
    return {"to": to, "offset": None, "topics": topics}
