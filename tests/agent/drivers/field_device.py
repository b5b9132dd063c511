"""A SunSpec device laid out the way field devices are, independently of the project's simulator.

Its register map is encoded and decoded by pysunspec2's own ``sunspec2.device.Model`` (not by
:mod:`agent.drivers.sunspec_models`, the code under test), from a :class:`Layout` that says
which models appear in which order, where ``SunS`` sits, whether the common model carries its
optional ``Pad`` (length 66) or not (65), which scale factors the device uses and which optional
points it leaves "not implemented". It is served by a real pymodbus TCP server on 127.0.0.1.

Behaviour is just enough for the shared conformance suite: a battery accepts a power request
from 704 ``WSet`` (watts mode) or from 124 ``StorCtl_Mod`` + ``InWRte``/``OutWRte``, within its
rating and state of charge; a PV inverter caps its output at 704/123 ``WMaxLimPct``; a meter
reports what the test sets. Read-only points and out-of-range values are refused with Modbus
exceptions and change nothing. ``fault`` = ``"timeout"`` (silent) or ``"bad_value"``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import sunspec2.device as ssd
from pymodbus.constants import ExcCodes
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from agent.drivers.sunspec_sim import free_port
from gridswarm.clock import Clock

SUNS = [0x5375, 0x6E53]


@dataclass(frozen=True)
class Layout:
    """How a device lays out its registers."""

    models: tuple[int, ...]  # in device order, common model 1 first (SunSpec requires it)
    base: int = 40000
    common_len: int = 65  # 65: no Pad; 66: with Pad
    sf: dict[str, int] = field(default_factory=dict)  # scale factors (default 0 for the rest)
    omit: frozenset[str] = frozenset()  # optional points left "not implemented"


# three maps laid out unlike the project's simulator (which uses 1, inverter, ratings, storage,
# controls at 40000 with Pad and one set of scale factors)
LAYOUTS: dict[str, Layout] = {
    # a hybrid battery inverter with only the DER measurement, basic storage and DER controls;
    # no nameplate, no 713: the config has to supply the capacity
    "der-124": Layout((1, 124, 704, 701), sf={"W_SF": 0, "Hz_SF": -3, "V_SF": -2, "TotWh_SF": 2, "Tmp_SF": -2,
                                              "WChaMax_SF": 2, "ChaState_SF": -2, "MinRsvPct_SF": -2,
                                              "InOutWRte_SF": -2, "WSet_SF": 1, "WMaxLimPct_SF": -2},
                      omit=frozenset({"LLV"})),
    # controls before measurements, 713 storage capacity, 702 ratings, SunS at 0, common model with Pad
    "der-713": Layout((1, 704, 713, 702, 701), base=0, common_len=66,
                      sf={"W_SF": 2, "Hz_SF": -2, "V_SF": -1, "TotWh_SF": 3, "Tmp_SF": 0, "WH_SF": 1,
                          "Pct_SF": -2, "WSet_SF": 0, "WMaxLimPct_SF": -1, "PF_SF": -3},
                      omit=frozenset({"LNV", "TmpCab"})),
    # a legacy inverter: integer model 103 behind its settings, nameplate after, 123 curtailment,
    # 124 storage; SunS at 50000
    "legacy-103": Layout((1, 121, 103, 124, 120, 123), base=50000,
                         sf={"W_SF": 1, "Hz_SF": -2, "V_SF": -1, "WH_SF": 2, "Tmp_SF": -1, "WMax_SF": 1,
                             "WRtg_SF": 2, "WHRtg_SF": 2, "WChaMax_SF": 1, "ChaState_SF": 0, "MinRsvPct_SF": 0,
                             "InOutWRte_SF": -1, "WMaxLimPct_SF": 0, "MaxChaRte_SF": 1, "MaxDisChaRte_SF": 1},
                         omit=frozenset({"PPVphAB"})),
}


class FieldDevice:
    """A battery or PV inverter, or a grid meter, on a Modbus TCP port (see the module docstring)."""

    def __init__(self, clock: Clock, layout: Layout, *, kind: str = "battery", rated_w: float = 5_000.0,
                 capacity_wh: float = 10_000.0, soc: float = 0.5, pv_w: float = 4_000.0, unit_id: int = 1,
                 serial: str = "FIELD-0001", mn: str = "Acme") -> None:
        self.clock = clock
        self.layout = layout
        self.kind = kind
        self.rated_w = rated_w
        self.capacity_wh = capacity_wh
        self.soc = soc
        self.pv_w = pv_w
        self.unit_id = unit_id
        self.power_w = 0.0
        self.wh_out = 0.0
        self.wh_in = 0.0
        self.meter = {"W": 1_500.0, "Hz": 50.02, "PhV": 231.4, "PPV": 400.8, "TotWhImp": 12_345.0,
                      "TotWhExp": 678.0}
        self.voltage = {"LNV": 230.4, "LLV": 399.1, "PhVphA": 230.4, "PPVphAB": 399.1}
        self.hz = 49.987
        self.fault: str | None = None
        self.timeout_delay_s = 1.5  # how long a request hangs under fault "timeout"
        self.writes: list[tuple[int, list[int]]] = []
        self.reads: Counter[int] = Counter()  # read requests by the model they start in
        self.t: float | None = None
        self.models: dict[int, ssd.Model] = {}
        self.addr: dict[int, int] = {}  # model id -> address of its ID register
        self.lens: dict[int, int] = {}  # model id -> L the device reports
        self.offsets: dict[int, dict[str, tuple[int, int, str]]] = {}  # name -> (offset, size, access)
        self._server: ModbusTcpServer | None = None
        self.port = 0
        addr = layout.base + 2
        for mid in layout.models:
            m = ssd.Model(model_id=mid)
            full = len(m.get_mb()) // 2
            length = layout.common_len if mid == 1 else full - 2
            m.points["ID"].value = mid
            m.points["L"].value = length
            self.models[mid], self.addr[mid], self.lens[mid] = m, addr, length
            off, table = 0, {}
            for name, pt in m.points.items():
                table[name] = (off, pt.len, pt.pdef.get("access", "R"))
                off += pt.len
            self.offsets[mid] = table
            addr += 2 + length
        self.end = addr
        self._static()
        self._publish()
        self.regs = self.image()

    # ------------------------------------------------------------------ values

    def _set(self, mid: int, name: str, value: Any, *, computed: bool = True) -> None:
        m = self.models.get(mid)
        if m is None or name not in m.points or name in self.layout.omit:
            return
        pt = m.points[name]
        if value is None:
            pt.value = None
        elif computed and pt.sf_required:
            try:
                pt.cvalue = value
            except ssd.ModelError:  # its scale factor is not implemented: store the raw value
                pt.value = round(value)
        else:
            pt.value = value

    def _get(self, mid: int, name: str) -> Any:
        m = self.models.get(mid)
        if m is None:
            return None
        return m.points[name].cvalue

    def _static(self) -> None:
        for mid, m in self.models.items():
            for name, pt in m.points.items():
                if pt.pdef["type"] == "sunssf":
                    self._set(mid, name, self.layout.sf.get(name, 0), computed=False)
        store = self.kind == "battery"
        self._set(1, "Mn", "Acme")
        self._set(1, "Md", f"Field-{self.kind}")
        self._set(1, "SN", "FIELD-0001")
        self._set(1, "Vr", "2.1.0")
        self._set(1, "DA", self.unit_id, computed=False)
        self._set(120, "DERTyp", 82 if store else 4)
        self._set(120, "WRtg", self.rated_w)
        self._set(120, "WHRtg", self.capacity_wh if store else None)
        self._set(120, "MaxChaRte", self.rated_w if store else None)
        self._set(120, "MaxDisChaRte", self.rated_w if store else None)
        self._set(121, "WMax", self.rated_w)
        self._set(702, "WMaxRtg", self.rated_w)
        self._set(702, "WMax", self.rated_w)
        self._set(702, "WChaRteMaxRtg", self.rated_w if store else None)
        self._set(702, "WDisChaRteMaxRtg", self.rated_w if store else None)
        self._set(713, "WHRtg", self.capacity_wh)
        self._set(713, "Sta", 1)
        for name, value in (("WChaMax", self.rated_w), ("StorCtl_Mod", 0), ("MinRsvPct", 0.0), ("InWRte", 0.0),
                            ("OutWRte", 0.0), ("ChaGriSet", 1)):
            self._set(124, name, value)
        for name, value in (("Conn", 1), ("WMaxLimPct", 100.0), ("WMaxLim_Ena", 0)):
            self._set(123, name, value)
        for name, value in (("WMaxLimPctEna", 0), ("WMaxLimPct", 100.0), ("WSetEna", 0), ("WSetMod", 1),
                            ("WSet", 0.0)):
            self._set(704, name, value)

    def _publish(self) -> None:
        p = self.power_w
        inv = 701 if 701 in self.models else 103
        self._set(inv, "W", p)
        self._set(inv, "Hz", self.hz)
        for name, v in self.voltage.items():
            self._set(inv, name, v)
        self._set(inv, "TmpCab", 31.5)
        self._set(701, "TotWhInj", self.wh_out)
        self._set(701, "TotWhAbs", self.wh_in)
        self._set(103, "WH", self.wh_out)
        self._set(103, "St", 4)
        self._set(701, "InvSt", 4)
        self._set(124, "ChaState", 100.0 * self.soc)
        self._set(713, "SoC", 100.0 * self.soc)
        self._set(713, "SoH", 98.0)
        for mid in (201, 202, 203, 204):
            for name, v in self.meter.items():
                self._set(mid, name, v)

    def image(self) -> list[int]:
        regs = list(SUNS)
        for mid in self.layout.models:
            data = self.models[mid].get_mb()
            words = [int.from_bytes(data[i:i + 2], "big") for i in range(0, len(data), 2)]
            regs += words[:2 + self.lens[mid]]
        regs += [0xFFFF, 0]
        if self.fault == "bad_value":
            inv = next(m for m in (701, 103, 203, 201) if m in self.models)
            off = self.addr[inv] - self.layout.base + self.offsets[inv]["W_SF"][0]
            regs[off] = 30  # a scale factor outside -10..10
        return regs

    def read_point(self, mid: int, name: str) -> Any:
        """The point's value as the device holds it (computed), for assertions."""
        return self._get(mid, name)

    # ------------------------------------------------------------------ physics

    def _advance(self) -> None:
        now = self.clock.now()
        if self.t is not None and now > self.t:
            dt = now - self.t
            wh = self.power_w * dt / 3600.0
            self.soc = min(1.0, max(0.0, self.soc - wh / self.capacity_wh))
            if wh >= 0:
                self.wh_out += wh
            else:
                self.wh_in -= wh
        self.t = now
        self._settle()

    def _request(self) -> float | None:
        """The power the controls ask for, or None when they are out of range."""
        if self.kind == "battery":
            if self._get(704, "WSetEna") == 1 and self._get(704, "WSetMod") == 1:
                return float(self._get(704, "WSet") or 0.0)
            if 124 in self.models:
                mod = self._get(124, "StorCtl_Mod") or 0
                if mod & ~0x3:
                    return None
                wcha = float(self._get(124, "WChaMax") or 0.0)
                out_pct, in_pct = float(self._get(124, "OutWRte") or 0.0), float(self._get(124, "InWRte") or 0.0)
                if not (-100 <= out_pct <= 100 and -100 <= in_pct <= 100):
                    return None
                return (wcha * out_pct / 100 if mod & 2 else 0.0) - (wcha * in_pct / 100 if mod & 1 else 0.0)
            return 0.0
        pct = None
        if self._get(704, "WMaxLimPctEna") == 1:
            pct = float(self._get(704, "WMaxLimPct") or 0.0)
        elif self._get(123, "WMaxLim_Ena") == 1:
            pct = float(self._get(123, "WMaxLimPct") or 0.0)
        if pct is not None and not 0 <= pct <= 100:
            return None
        return self.rated_w if pct is None else self.rated_w * pct / 100

    def _valid(self) -> bool:
        for mid in (123, 704):
            pct = self._get(mid, "WMaxLimPct")
            if pct is not None and not 0 <= pct <= 100:
                return False
        wset = self._get(704, "WSet")
        if wset is not None and abs(wset) > self.rated_w:
            return False
        req = self._request()
        return req is not None and abs(req) <= self.rated_w + 1e-6

    def _settle(self) -> None:
        if self.kind == "grid":
            self.power_w = self.meter["W"]
            return
        req = self._request() or 0.0
        if self.kind == "battery":
            if (req > 0 and self.soc <= 0.0) or (req < 0 and self.soc >= 1.0):
                req = 0.0
            self.power_w = max(-self.rated_w, min(self.rated_w, req))
        else:
            self.power_w = min(self.pv_w, req)

    # ------------------------------------------------------------------ Modbus

    def _locate(self, address: int) -> tuple[int, str, int, int, str] | None:
        for mid, start in self.addr.items():
            if start <= address < start + 2 + self.lens[mid]:
                for name, (off, size, access) in self.offsets[mid].items():
                    if start + off <= address < start + off + size:
                        return mid, name, start + off, size, access
        return None

    async def _action(self, function_code: int, start_address: int, address: int, count: int,
                      registers: list[int], set_values: list[int] | list[bool] | None) -> ExcCodes | None:
        if self.fault == "timeout":
            await asyncio.sleep(self.timeout_delay_s)  # simulates the hung device (not a wait for anything)
            return ExcCodes.DEVICE_BUSY
        if address + count > self.end + 2:
            return ExcCodes.ILLEGAL_ADDRESS
        self._advance()
        if not set_values:
            self.reads[next((m for m, a in self.addr.items() if a <= address < a + 2 + self.lens[m]), 0)] += 1
        if set_values:
            touched: dict[tuple[int, str], tuple[int, int]] = {}
            for a in range(address, address + count):
                loc = self._locate(a)
                if loc is None or loc[4] != "RW":
                    return ExcCodes.ILLEGAL_ADDRESS
                touched[(loc[0], loc[1])] = (loc[2], loc[3])
            words = {address + i: int(v) for i, v in enumerate(set_values)}
            saved = {}
            for (mid, name), (start, size) in touched.items():
                cur = registers[start - start_address:start - start_address + size]
                new = [words.get(start + i, cur[i]) for i in range(size)]
                pt = self.models[mid].points[name]
                saved[(mid, name)] = pt.value
                pt.set_mb(b"".join(w.to_bytes(2, "big") for w in new))
            if not self._valid():
                for (mid, name), v in saved.items():
                    self.models[mid].points[name].value = v
                return ExcCodes.ILLEGAL_VALUE
            self.writes.append((address, [int(v) for v in set_values]))
            self._settle()
        self._publish()
        img = self.image()
        if set_values:
            # pymodbus stores set_values after this returns; hand it what the device holds
            set_values[:] = img[address - start_address:address - start_address + count]  # type: ignore[index]
        registers[:len(img)] = img
        return None

    async def start(self) -> int:
        self.port = free_port()
        device = SimDevice(self.unit_id, simdata=[SimData(self.layout.base, values=self.image() + [0] * 4,
                                                          datatype=DataType.REGISTERS)], action=self._action)
        self._server = ModbusTcpServer(device, address=("127.0.0.1", self.port))
        await self._server.serve_forever(background=True)
        return self.port

    async def stop(self) -> None:
        if self._server is not None:
            server, self._server = self._server, None
            with contextlib.suppress(Exception):
                await server.shutdown()
            await asyncio.sleep(0)


@contextlib.asynccontextmanager
async def serve(clock: Clock, layout: Layout, **kw: Any):
    dev = FieldDevice(clock, layout, **kw)
    await dev.start()
    try:
        yield dev
    finally:
        await dev.stop()


def meter_layout(model: int) -> Layout:
    return Layout((1, model), sf={"W_SF": 1, "Hz_SF": -2, "V_SF": -1, "TotWh_SF": 1, "A_SF": -2})

