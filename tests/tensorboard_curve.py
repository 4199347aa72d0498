"""What TensorBoard would draw from a run's event files, decoded independently of s2s_jax's own encoder
(tests, and bench/reliability_points.py, which checks any checkout's files)."""


def tensorboard_curve(directory, tag: str) -> list[tuple[int, float]]:
    """(step, value) of scalar `tag` as TensorBoard shows it: every event file of `directory` in the order they
    were written, a SessionLog START at step s dropping the earlier points at steps >= s (what a resumed run's
    writer asks for). Decoded with tensorboardX's protobuf classes, independently of s2s_jax's encoder; the
    records are read up to the last complete one, as TensorBoard reads a file a killed writer left."""
    import struct
    from pathlib import Path

    from tensorboardX.proto import event_pb2

    def records(path):
        data, out = path.read_bytes(), []
        while len(data) >= 16:
            (n,) = struct.unpack("<Q", data[:8])
            if len(data) < 16 + n:
                break
            out.append(event_pb2.Event.FromString(data[12 : 12 + n]))
            data = data[16 + n :]
        return out

    files = [records(p) for p in Path(directory).glob("events.out.tfevents.*")]
    points: dict[int, float] = {}
    for events in sorted(files, key=lambda ev: ev[0].wall_time if ev else 0.0):
        for e in events:
            if e.HasField("session_log") and e.session_log.status == event_pb2.SessionLog.START:
                points = {s: v for s, v in points.items() if s < e.step}
            for value in e.summary.value:
                if value.tag == tag:
                    points[e.step] = value.simple_value
    return sorted(points.items())
