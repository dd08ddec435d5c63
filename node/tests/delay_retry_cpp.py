#!/usr/bin/env python3
"""Delay levels and the retry ladder with the Apache RocketMQ C++ client (PyPI rocketmq==0.4.4,
run by node/tests/delay_retry.rs through the venv of ../shared/compat/run-cpp-client.sh).

--mode delay: sends one message with set_delay_time_level(LEVEL), then consumes it with a push
  consumer; prints "sent_ms=.. received_ms=.. store_ms=..".
--mode dlq:   sends one message, then a push consumer answers RECONSUME_LATER every time until
  no new attempt comes for --quiet seconds (or --expect attempts were seen). The quiet time
  is long because the client learns the route of %RETRY%<group> only on its next rebalance. rocketmq 0.4.4's own `subscribe` re-raises a
  callback's exception in `finally`, which makes ctypes return 0 (CONSUME_SUCCESS), so the
  callback is registered through the binding's ffi with an explicit status;
  prints "attempts=<reconsume times of each attempt, comma-separated>".

Every wait is bounded by --timeout. Loopback only.
"""
import argparse
import sys
import threading
import time

from rocketmq.client import Message, Producer, PushConsumer, RecvMessage
from rocketmq.ffi import _CConsumeStatus, dll

p = argparse.ArgumentParser()
p.add_argument("--namesrv", required=True)
p.add_argument("--topic", required=True)
p.add_argument("--group", required=True)
p.add_argument("--mode", choices=["delay", "dlq"], required=True)
p.add_argument("--level", type=int, default=2)
p.add_argument("--timeout", type=float, default=120.0)
p.add_argument("--quiet", type=float, default=30.0)
p.add_argument("--expect", type=int, default=0, help="dlq mode: stop after this many attempts")
args = p.parse_args()

lock = threading.Lock()
seen = []  # (received_ms, reconsume_times, msg_id, store_ms, delay_level)


def now_ms():
    return int(time.time() * 1000)


def on_message(_consumer, handle):
    msg = RecvMessage(handle)
    with lock:
        seen.append((now_ms(), msg.reconsume_times, msg.id, msg.store_timestamp,
                     msg.delay_time_level))
    if args.mode == "dlq":
        return _CConsumeStatus.RECONSUME_LATER.value
    return _CConsumeStatus.CONSUME_SUCCESS.value


producer = Producer(args.group + "_pg")
producer.set_namesrv_addr(args.namesrv)
producer.start()
m = Message(args.topic)
m.set_keys("ladder-key")
m.set_tags("TagA")
m.set_body("ladder body")
if args.mode == "delay":
    m.set_delay_time_level(args.level)
sent_ms = now_ms()
result = producer.send_sync(m)
producer.shutdown()
if int(result.status) != 0:
    print("error=send status %s" % result.status)
    sys.exit(1)

consumer = PushConsumer(args.group)
consumer.set_namesrv_addr(args.namesrv)
consumer.set_thread_count(1)
if dll.Subscribe(consumer._handle, args.topic.encode(), b"*") != 0:
    print("error=subscribe failed")
    sys.exit(1)
consumer._register_callback(on_message)
consumer.start()

deadline = time.time() + args.timeout
last_count, last_change = 0, time.time()
while time.time() < deadline:
    time.sleep(0.2)
    with lock:
        count = len(seen)
    if args.mode == "delay" and count > 0:
        break
    if count != last_count:
        last_count, last_change = count, time.time()
    elif args.mode == "dlq" and count > 0 and time.time() - last_change > args.quiet:
        break
    if args.mode == "dlq" and args.expect and count >= args.expect:
        time.sleep(1.0)  # the last send-back goes out after the callback returns
        break
consumer.shutdown()

with lock:
    if args.mode == "delay":
        if not seen:
            print("error=nothing received")
            sys.exit(1)
        received_ms, _, _, store_ms, _ = seen[0]
        print("sent_ms=%d received_ms=%d store_ms=%d" % (sent_ms, received_ms, store_ms))
    else:
        print("attempts=" + ",".join(str(s[1]) for s in seen))
