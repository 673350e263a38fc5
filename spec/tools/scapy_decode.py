#!/usr/bin/python3
"""Decode STAMP packets in a pcap with scapy.contrib.stamp (an independent decoder).

Usage: scapy_decode.py FILE.pcap REFLECTOR_PORT
Prints one JSON object per STAMP packet: direction, base fields and TLV headers.
"""
import json
import sys

from scapy.all import UDP, rdpcap
from scapy.contrib.stamp import (STAMPSessionReflectorTestUnauthenticated,
                                 STAMPSessionSenderTestUnauthenticated)


def tlvs(pkt):
    return [{"flags": int(t.flags), "type": int(t.type), "len": int(t.len)} for t in pkt.tlv_objects]


def main():
    path, port = sys.argv[1], int(sys.argv[2])
    for p in rdpcap(path):
        if UDP not in p:
            continue
        udp = p[UDP]
        payload = bytes(udp.payload)
        if udp.dport == port:
            s = STAMPSessionSenderTestUnauthenticated(payload, _parent=udp)
            out = {"dir": "test", "seq": s.seq, "ssid": s.ssid, "ts": float(s.ts),
                   "s": int(s.err_estimate.S), "z": int(s.err_estimate.Z),
                   "scale": int(s.err_estimate.scale), "mult": int(s.err_estimate.multiplier), "tlvs": tlvs(s)}
        elif udp.sport == port:
            s = STAMPSessionReflectorTestUnauthenticated(payload, _parent=udp)
            out = {"dir": "reply", "seq": s.seq, "ssid": s.ssid, "seq_sender": s.seq_sender,
                   "ttl_sender": s.ttl_sender, "ts_rx": float(s.ts_rx), "ts": float(s.ts), "tlvs": tlvs(s)}
        else:
            continue
        print(json.dumps(out))


if __name__ == "__main__":
    main()
