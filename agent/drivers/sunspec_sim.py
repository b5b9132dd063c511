"""A simulated SunSpec device served over Modbus TCP (pymodbus ``SimDevice``), for tests and demos.

The register map is built from pysunspec2's model definitions (:mod:`agent.drivers.sunspec_models`):
``SunS`` at the base address (default 40000), then common model 1, an inverter model (103 or
701), nameplate 120 / settings 121 or DER capacity 702, storage 124 for a battery, and controls
123 and/or 704, then the end marker. Scale factors are deliberately not 0 so scaling is exercised.

Physics come from the same models as the ``sim`` driver (battery + inverter, or PV), stepped by
the injected clock whenever the device is read or written. Writes to read-only points and
out-of-range values are refused with Modbus exception ILLEGAL_ADDRESS / ILLEGAL_VALUE and change
nothing. Faults can be injected: ``timeout`` (the device stops answering), ``bad_value`` (it
reports nonsense), and :meth:`SunSpecSimDevice.stop` makes it vanish.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from collections.abc import Callable
from typing import Any

from pymodbus.constants import ExcCodes
from pymodbus.server import ModbusTcpServer, ModbusTlsServer
from pymodbus.simulator import DataType, SimData, SimDevice

from agent.devices.inverter import InverterModel
from agent.devices.pv import PVModel
from agent.devices.spec import validate_devices
from agent.devices.storage import StoreModel, battery_from_spec
from agent.drivers.sunspec_models import SUNS, ModelLayout, Point, decode, layout, model_regs
from gridswarm.clock import Clock

__all__ = ["SunSpecSimDevice", "free_port"]

# scale factors used by the simulated device (all non-zero on purpose)
SF = {"W_SF": 1, "Hz_SF": -2, "WH_SF": 0, "Tmp_SF": -1, "A_SF": -2, "V_SF": -1, "VA_SF": 1, "VAr_SF": 1,
      "PF_SF": -2, "DCA_SF": -2, "DCV_SF": -1, "DCW_SF": 1, "WRtg_SF": 1, "VARtg_SF": 1, "VArRtg_SF": 1,
      "ARtg_SF": -1, "PFRtg_SF": -2, "WHRtg_SF": 1, "AhrRtg_SF": 0, "MaxChaRte_SF": 1, "MaxDisChaRte_SF": 1,
      "WMax_SF": 1, "WChaMax_SF": 1, "WChaDisChaGra_SF": 0, "VAChaMax_SF": 1, "MinRsvPct_SF": -1,
      "ChaState_SF": -1, "StorAval_SF": 0, "InBatV_SF": -1, "InOutWRte_SF": -1, "WMaxLimPct_SF": -1,
      "OutPFSet_SF": -2, "VArPct_SF": -1, "Var_SF": 1, "TotWh_SF": 0, "TotVarh_SF": 0, "WSet_SF": 0,
      "WSetPct_SF": -1, "VarSet_SF": 0, "VarSetPct_SF": -1, "S_SF": 0, "VRef_SF": -1, "VRefOfs_SF": -1,
      "VMinMax_SF": -1, "VAMax_SF": 1, "VArMax_SF": 1, "WGra_SF": 0, "PFMin_SF": -2, "MaxRmpRte_SF": 0,
      "ECPNomHz_SF": -2, "Pct_SF": -1}


def free_port() -> int:
    """A TCP port on 127.0.0.1 free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class SunSpecSimDevice:
    """One SunSpec device (battery inverter with storage, or PV inverter) on a Modbus TCP port."""

    def __init__(self, clock: Clock, *, kind: str = "battery", inverter_model: int = 103,
                 controls: tuple[int, ...] = (123,), base: int = 40000, unit_id: int = 1,
                 rated_w: float = 5_000.0, capacity_wh: float = 10_000.0, initial_soc: float = 0.5,
                 pv_peak_w: float = 6_000.0, serial: str = "GS-SIM-0001") -> None:
        if kind not in ("battery", "pv"):
            raise ValueError("kind must be battery or pv")
        if inverter_model not in (103, 701):
            raise ValueError("inverter_model must be 103 or 701")
        self.clock = clock
        self.kind = kind
        self.base = base
        self.unit_id = unit_id
        self.rated_w = float(rated_w)
        self.serial = serial
        self.inverter_model = inverter_model
        self.controls = tuple(controls)
        self.store: StoreModel | None = None
        self.inverter = InverterModel(rated_w, 0.97)
        self.pv: PVModel | None = None
        if kind == "battery":
            spec = validate_devices([{"type": "battery", "capacity_wh": capacity_wh, "max_charge_w": rated_w,
                                      "max_discharge_w": rated_w, "initial_soc": initial_soc,
                                      "soc_min": 0.0, "soc_max": 1.0}])[0]
            self.store = battery_from_spec(spec)
        else:
            self.pv = PVModel(pv_peak_w, rated_w=rated_w)
        self.requested_w = 0.0
        self.limit_pct: float | None = None
        self.wh_out = 0.0
        self.wh_in = 0.0
        self.t: float | None = None
        self.fault: str | None = None
        self.timeout_delay_s = 5.0
        self.writes = 0
        self.frequency_hz = 50.0  # what Hz reports (tests and benchmarks step it)
        self.on_write: Callable[[float], None] | None = None  # called with the requested W after a write
        self._server: ModbusTcpServer | None = None
        self._task: asyncio.Task[None] | None = None
        self.host = "127.0.0.1"
        self.port = 0
        self._build_map()

    # ------------------------------------------------------------------ register map

    def _models(self) -> list[int]:
        ids = [1, self.inverter_model]
        ids += [702] if self.inverter_model == 701 else [120, 121]
        if self.kind == "battery":
            ids.append(124 if self.inverter_model == 103 else 713)
        ids += [c for c in self.controls if c in (123, 704)]
        return ids

    def _build_map(self) -> None:
        regs = list(SUNS)
        self.offsets: dict[int, int] = {}  # model id -> address of its ID register
        for mid in self._models():
            self.offsets[mid] = self.base + len(regs)
            regs += model_regs(mid, self._static(mid))
        regs += [0xFFFF, 0]
        self.regs_init = regs

    def _static(self, mid: int) -> dict[str, Any]:
        lay = layout(mid)
        v: dict[str, Any] = {name: SF[name] for name, pt in lay.points.items() if pt.type == "sunssf" and name in SF}
        w_sf = 10 ** SF["W_SF"]
        if mid == 1:
            v.update(Mn="GridSwarm", Md=f"SimInverter-{self.kind}", Opt="", Vr="1.0", SN=self.serial, DA=self.unit_id)
        elif mid == 120:
            v.update(DERTyp=82 if self.kind == "battery" else 4, WRtg=round(self.rated_w / w_sf),
                     WHRtg=round(self.store.nameplate_wh / 10) if self.store else None,
                     MaxChaRte=round(self.rated_w / w_sf) if self.store else None,
                     MaxDisChaRte=round(self.rated_w / w_sf) if self.store else None)
        elif mid == 121:
            v.update(WMax=round(self.rated_w / w_sf))
        elif mid == 702:
            v.update(WMaxRtg=round(self.rated_w / w_sf), WMax=round(self.rated_w / w_sf),
                     WChaRteMaxRtg=round(self.rated_w / w_sf) if self.store else None,
                     WDisChaRteMaxRtg=round(self.rated_w / w_sf) if self.store else None)
        elif mid == 124:
            v.update(WChaMax=round(self.rated_w / w_sf), StorCtl_Mod=0, MinRsvPct=0, InWRte=0, OutWRte=0,
                     InOutWRte_RvrtTms=0, ChaGriSet=1)
        elif mid == 713:
            v.update(WHRtg=round(self.store.nameplate_wh) if self.store else None, Sta=1)
        elif mid == 123:
            v.update(Conn=1, WMaxLimPct=1000, WMaxLim_Ena=0, WMaxLimPct_RvrtTms=0)
        elif mid == 704:
            v.update(WMaxLimPctEna=0, WMaxLimPct=1000, WSetEna=0, WSetMod=1, WSet=0)
        return v

    # ------------------------------------------------------------------ server

    async def start(self, host: str = "127.0.0.1", port: int | None = None,
                    sslctx: ssl.SSLContext | None = None) -> int:
        """Serve on ``host:port`` (a free port by default); return the port."""
        self.host = host
        self.port = port or free_port()
        device = SimDevice(self.unit_id, simdata=[SimData(self.base, values=list(self.regs_init),
                                                          datatype=DataType.REGISTERS)], action=self._action)
        if sslctx is None:
            self._server = ModbusTcpServer(device, address=(host, self.port))
        else:
            self._server = ModbusTlsServer(device, address=(host, self.port), sslctx=sslctx)
        await self._server.serve_forever(background=True)
        return self.port

    async def stop(self) -> None:
        """Stop serving (the device vanishes); idempotent."""
        if self._server is not None:
            server, self._server = self._server, None
            with contextlib.suppress(Exception):
                await server.shutdown()
            await asyncio.sleep(0)

    # ------------------------------------------------------------------ physics

    def _advance(self) -> None:
        now = self.clock.now()
        if self.t is None:
            self.t = now
            self._settle(now)
            return
        dt = now - self.t
        if dt <= 0:
            return
        self.t = now
        if self.store is not None:
            ac = self.inverter.ac_w
            got = self.store.step(self.inverter.dc_for(ac), dt)
            ac = self.inverter.ac_for(got)
        else:
            ac = self.inverter.ac_w
        wh = ac * dt / 3600.0
        if wh >= 0:
            self.wh_out += wh
        else:
            self.wh_in -= wh
        self._settle(now)

    def _settle(self, now: float) -> None:
        if self.store is not None:
            chg, dis = self.store.dc_limits()
            self.inverter.accept(self.requested_w, chg, dis)
        else:
            assert self.pv is not None
            limit = self.rated_w if self.limit_pct is None else self.rated_w * self.limit_pct / 100.0
            self.inverter.target_w = min(self.pv.available_w(now), limit)
        self.inverter.ramp(0.0)
        self.inverter.ac_w = self.inverter.target_w

    # ------------------------------------------------------------------ register access

    def _pt(self, mid: int, name: str) -> tuple[int, Point]:
        lay = layout(mid)
        return self.offsets[mid] - self.base, lay.points[name]

    def _put(self, regs: list[int], mid: int, name: str, value: Any) -> None:
        from agent.drivers.sunspec_models import encode

        off, pt = self._pt(mid, name)
        regs[off + pt.offset:off + pt.offset + pt.size] = encode(value, pt)

    def _get(self, regs: list[int], mid: int, name: str) -> Any:
        off, pt = self._pt(mid, name)
        return decode(regs[off:off + layout(mid).length + 2], pt)

    def _publish(self, regs: list[int]) -> None:
        ac = self.inverter.ac_w
        w_sf = 10 ** SF["W_SF"]
        if self.inverter_model == 103:
            self._put(regs, 103, "W", round(ac / w_sf))
            self._put(regs, 103, "Hz", round(100 * self.frequency_hz))
            self._put(regs, 103, "PhVphA", 2304)  # 230.4 V (V_SF = -1)
            self._put(regs, 103, "WH", int(self.wh_out) % (1 << 32))
            self._put(regs, 103, "TmpCab", round(10 * (self.store.temperature_c if self.store and
                                                      self.store.temperature_c is not None else 30.0)))
            self._put(regs, 103, "St", 4 if abs(ac) > 0 else 8)
        else:
            self._put(regs, 701, "W", round(ac / w_sf))
            self._put(regs, 701, "Hz", round(100 * self.frequency_hz))
            self._put(regs, 701, "LNV", 2304)  # 230.4 V (V_SF = -1)
            self._put(regs, 701, "LLV", 3991)
            self._put(regs, 701, "TotWhInj", int(self.wh_out))
            self._put(regs, 701, "TotWhAbs", int(self.wh_in))
            self._put(regs, 701, "TmpCab", round(10 * (self.store.temperature_c if self.store and
                                                      self.store.temperature_c is not None else 30.0)))
            self._put(regs, 701, "InvSt", 4 if abs(ac) > 0 else 8)
        self._put(regs, self.inverter_model, "W_SF", SF["W_SF"])
        self._put(regs, self.inverter_model, "V_SF", SF["V_SF"])
        soc_mid = 124 if 124 in self.offsets else 713
        if self.store is not None:
            soc = self.store.soc
            if soc_mid == 124:
                self._put(regs, 124, "ChaState", round(1000 * soc))
                self._put(regs, 124, "ChaSt", 3 if ac > 0 else 4 if ac < 0 else (5 if soc >= 0.999 else 2
                                                                                   if soc <= 0.001 else 6))
            else:
                self._put(regs, 713, "SoC", round(1000 * soc))
                self._put(regs, 713, "SoH", round(1000 * self.store.soh))
                self._put(regs, 713, "WHAvail", round(self.store.energy_wh))
        if self.fault == "bad_value":
            if self.store is not None:
                off, pt = self._pt(soc_mid, "ChaState" if soc_mid == 124 else "SoC")
                regs[off + pt.offset] = 2500  # 250 % state of charge
            else:
                off, pt = self._pt(self.inverter_model, "W_SF")
                regs[off + pt.offset] = 30  # scale factor outside -10..10

    def _read_controls(self, regs: list[int]) -> ExcCodes | None:
        """Turn the control registers into a power request; refuse nonsense (enabled or not)."""
        for mid in (123, 704):
            if mid in self.offsets:
                pct = float(self._get(regs, mid, "WMaxLimPct") or 0) * 10 ** SF["WMaxLimPct_SF"]
                if not 0 <= pct <= 100:
                    return ExcCodes.ILLEGAL_VALUE
        if 704 in self.offsets and abs(float(self._get(regs, 704, "WSet") or 0)) * 10 ** SF["WSet_SF"] > self.rated_w:
            return ExcCodes.ILLEGAL_VALUE
        if self.store is not None:
            request = None
            if 704 in self.offsets and self._get(regs, 704, "WSetEna") == 1:
                mode = self._get(regs, 704, "WSetMod")
                if mode == 1:
                    request = float(self._get(regs, 704, "WSet") or 0) * 10 ** SF["WSet_SF"]
                else:
                    request = float(self._get(regs, 704, "WSetPct") or 0) * 10 ** SF["WSetPct_SF"] / 100 * self.rated_w
            elif 124 not in self.offsets:
                request = 0.0  # 704 disabled and nothing else: the inverter idles
            else:
                mod = self._get(regs, 124, "StorCtl_Mod") or 0
                wcha = float(self._get(regs, 124, "WChaMax") or 0) * 10 ** SF["WChaMax_SF"]
                rte = 10 ** SF["InOutWRte_SF"]
                out_pct = float(self._get(regs, 124, "OutWRte") or 0) * rte
                in_pct = float(self._get(regs, 124, "InWRte") or 0) * rte
                if mod & ~0x3 or not -100 <= out_pct <= 100 or not -100 <= in_pct <= 100:
                    return ExcCodes.ILLEGAL_VALUE
                request = 0.0
                if mod & 0x2:
                    request += wcha * out_pct / 100
                if mod & 0x1:
                    request -= wcha * in_pct / 100
            if request is not None:
                if abs(request) > self.rated_w + 1e-6:
                    return ExcCodes.ILLEGAL_VALUE
                self.requested_w = request
        else:
            pct = None
            if 704 in self.offsets and self._get(regs, 704, "WMaxLimPctEna") == 1:
                pct = float(self._get(regs, 704, "WMaxLimPct") or 0) * 10 ** SF["WMaxLimPct_SF"]
            elif 123 in self.offsets and self._get(regs, 123, "WMaxLim_Ena") == 1:
                pct = float(self._get(regs, 123, "WMaxLimPct") or 0) * 10 ** SF["WMaxLimPct_SF"]
            if pct is not None and not 0 <= pct <= 100:
                return ExcCodes.ILLEGAL_VALUE
            self.limit_pct = pct
        return None

    def _writable(self, address: int, count: int) -> bool:
        for mid, start in self.offsets.items():
            lay: ModelLayout = layout(mid)
            for pt in lay.points.values():
                a = start + pt.offset
                if a < address + count and address < a + pt.size and pt.access != "RW":
                    return False
        return address >= self.base + 2

    async def _action(self, function_code: int, start_address: int, address: int, count: int,
                      registers: list[int], set_values: list[int] | list[bool] | None) -> ExcCodes | None:
        if self.fault == "timeout":
            await asyncio.sleep(self.timeout_delay_s)
            return ExcCodes.DEVICE_BUSY
        self._advance()
        if set_values:
            if not self._writable(address, count):
                return ExcCodes.ILLEGAL_ADDRESS
            trial = list(registers)
            off = address - start_address
            trial[off:off + count] = [int(v) for v in set_values]
            if (err := self._read_controls(trial)) is not None:
                return err
            registers[off:off + count] = trial[off:off + count]
            self.writes += 1
            self._settle(self.clock.now())
            if self.on_write is not None:
                self.on_write(self.requested_w)
        self._publish(registers)
        return None


# ---------------------------------------------------------------------- the SunSpec test device


async def _serve_forever(args: Any) -> None:
    from gridswarm.clock import WallClock

    clock = WallClock()
    devices = [SunSpecSimDevice(clock, kind="battery", inverter_model=args.inverter_model,
                                controls=(704,) if args.inverter_model == 701 else (123,),
                                rated_w=args.rated_w, capacity_wh=args.capacity_wh, serial="GS-SIM-BATT")]
    ports = [args.port]
    if args.pv_port:
        devices.append(SunSpecSimDevice(clock, kind="pv", inverter_model=args.inverter_model,
                                        controls=(704,) if args.inverter_model == 701 else (123,),
                                        rated_w=args.rated_w, serial="GS-SIM-PV"))
        ports.append(args.pv_port)
    for dev, port in zip(devices, ports, strict=True):
        await dev.start(args.host, port)
        print(f"SunSpec test device: {dev.kind} (models {', '.join(map(str, dev.offsets))}) "
              f"on {args.host}:{port} unit {dev.unit_id}", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        for dev in devices:
            await dev.stop()


def main(argv: list[str] | None = None) -> int:
    """``python -m agent.drivers.sunspec_sim``: serve the SunSpec test device until Ctrl-C."""
    import argparse

    p = argparse.ArgumentParser(prog="python -m agent.drivers.sunspec_sim",
                                description="Serve simulated SunSpec devices over Modbus TCP (for examples/site-sunspec.yaml)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=5020, help="battery inverter port (default 5020)")
    p.add_argument("--pv-port", type=int, default=5021, help="PV inverter port (default 5021; 0 = none)")
    p.add_argument("--inverter-model", type=int, choices=(103, 701), default=701)
    p.add_argument("--rated-w", type=float, default=5_000.0)
    p.add_argument("--capacity-wh", type=float, default=10_000.0)
    args = p.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve_forever(args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
