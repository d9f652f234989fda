"""Message definitions stored in a bag: IDL honoured, an unparsable one costs its topic only."""

from __future__ import annotations

import sqlite3
import uuid
from pathlib import Path

import numpy as np
import pytest
from rosbags.typesys import get_types_from_msg, get_typestore

from irstd_ros.bags.io import IMAGE_TOPIC, BagReader, BagWriter, image_msg
from irstd_ros.bags.typestore import STORE
from irstd_ros.errors import BagError

STAMPS = (1_000_000_000, 1_100_000_000)


def _bag_with_idl_topic(path: Path, idl: str) -> tuple[Path, str]:
    """A sqlite3 bag of two frames and one /foo message of a type of its own (a new name
    each call: the reading typestore is shared), whose stored definition is ``idl`` (the
    IDL text, with ``{name}`` for the struct's name) in rosbag2's ``ros2idl`` encoding."""
    name = f"Foo{uuid.uuid4().hex[:8]}"
    msgtype = f"my_msgs/msg/{name}"
    store = get_typestore(STORE)  # not the package's: it would know the type already
    store.register(get_types_from_msg("int32 a\n", msgtype))
    with BagWriter(path, "sqlite3", store=store) as w:
        w.write("/foo", STAMPS[0], store.types[msgtype](a=7))
        for s in STAMPS:
            w.write(IMAGE_TOPIC, s, image_msg(store, np.zeros((4, 6), np.uint8), "mono8", s, "cam"))
    with sqlite3.connect(path / f"{path.name}.db3") as conn:
        conn.execute(
            "UPDATE message_definitions SET encoding='ros2idl', encoded_message_definition=? "
            "WHERE topic_type=?",
            (idl.format(name=name), msgtype),
        )
    return path, msgtype


IDL = "module my_msgs {{\n  module msg {{\n    struct {name} {{\n      int32 a;\n    }};\n  }};\n}};\n"


def test_a_definition_stored_as_idl_is_read(tmp_path):
    """An IDL definition was parsed as .msg text: the whole bag unreadable."""
    bag, msgtype = _bag_with_idl_topic(tmp_path / "idl", IDL)
    with BagReader(bag) as reader:
        [(_, _, foo)] = list(reader.messages(["/foo"]))
        assert foo.__msgtype__ == msgtype and foo.a == 7
        assert len(list(reader.messages([IMAGE_TOPIC]))) == len(STAMPS)


def test_an_unparsable_definition_of_another_topic_leaves_the_rest_readable(tmp_path, caplog):
    bag, msgtype = _bag_with_idl_topic(tmp_path / "bad", "module {{ not idl")
    with caplog.at_level("WARNING"):
        reader = BagReader(bag)
    with reader:
        assert len(list(reader.messages([IMAGE_TOPIC]))) == len(STAMPS)
        with pytest.raises(BagError, match=f"no definition of {msgtype} .topic /foo. to decode it"):
            list(reader.messages(["/foo"]))
    assert f"cannot parse the definition of {msgtype} (topic /foo) stored in the bag" in caplog.text
