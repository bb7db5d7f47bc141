"""An interface engine's feed for the adapter's crash test: N patients, each an ADT^A04 (a first
registration and an outpatient visit) and an ORU^R01 (a result document), sent over MLLP with
PyPI's hl7 client. Like a real engine it keeps a message until it is acknowledged AA: when the
connection drops (the adapter was killed) it reconnects and sends the same message again.

usage: feed.py HOST PORT PATIENTS PROGRESS_FILE
"""

import socket
import sys
import time

from hl7.client import MLLPClient

WEIGHTS = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]
SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚邵万钱严覃武戴莫孔向汤"
GIVEN = "伟芳娜秀英敏静丽强磊军洋勇艳杰娟涛明超兰霞平刚桂华玉萍红梅鹏飞建国志成"


def resident_id(i):
    # A county of Qiandongnan, a birth date from the index, a sequence, and the check character.
    day = 1 + i % 28
    month = 1 + (i // 28) % 12
    year = 1940 + (i // 336) % 70
    first17 = "522601%04d%02d%02d%03d" % (year, month, day, (i // 23520) % 1000)
    check = "10X98765432"[sum(int(c) * w for c, w in zip(first17, WEIGHTS)) % 11]
    return first17 + check, "%04d%02d%02d" % (year, month, day)


def name(i):
    return SURNAMES[i % len(SURNAMES)] + GIVEN[(i // len(SURNAMES)) % len(GIVEN)] + GIVEN[(i // 7) % len(GIVEN)]


def messages(i):
    rid, birth = resident_id(i)
    sex = "M" if int(rid[16]) % 2 else "F"
    msh = "MSH|^~\\&|HIS|QDN-H01|HIE|HIE|20261204101500||%s|%s|P|2.5.1|||||CHN|UNICODE UTF-8\r"
    pid = "PID|1||CRASH-%d^^^QDN-H01^MR~%s^^^CHN^NI||%s||%s|%s|||凯里市北京东路%d号^^^^^CHN^H^^522601||139%08d\r" % (
        i, rid, name(i), birth, sex, i % 500, i)
    a04 = (msh % ("ADT^A04^ADT_A01", "CA-%d" % i)) + "EVN|A04|20261204101500\r" + pid + \
        "PV1|1|O|内科^1^1||||D001^李^医生||||||||||||CV-%d|||||||||||||||||||||||||20261204100000\r" % i
    oru = (msh % ("ORU^R01^ORU_R01", "CO-%d" % i)) + pid + \
        "OBR|1||LAB-%d|GLU^血糖^L|||20261204080000|||||||||D002||||||20261204090000\r" % i + \
        "OBX|1|NM|GLU^血糖^L||%.1f|mmol/L|3.9-6.1|N|||F\r" % (4 + (i % 40) / 10)
    return [a04, oru]


def main():
    host, port, patients, progress = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    client = None
    sent = 0
    resends = 0
    for i in range(patients):
        for message in messages(i):
            while True:
                try:
                    if client is None:
                        client = MLLPClient(host, port)
                    ack = client.send_message(message)
                    if not ack:
                        # The adapter closed the connection (it was killed): not acknowledged.
                        raise ConnectionResetError("connection closed without an acknowledgement")
                    if b"MSA|AA|" not in ack:
                        raise SystemExit("not accepted: %r" % ack)
                    break
                except (OSError, socket.error):
                    if client is not None:
                        client.close()
                    client = None
                    resends += 1
                    time.sleep(0.2)
            sent += 1
            if sent % 1000 == 0:
                with open(progress, "w") as f:
                    f.write("%d\n" % sent)
    with open(progress, "w") as f:
        f.write("%d done %d resends\n" % (sent, resends))


if __name__ == "__main__":
    main()
