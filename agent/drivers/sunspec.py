"""The ``sunspec`` driver: SunSpec inverters (and their storage) over Modbus TCP, with pymodbus.

What it does
- **Discovery**: finds the ``SunS`` marker at 40000, 0 or 50000 (or the configured base), walks
  the model chain to the end marker and records every model's address and length. It drives
  the common model 1; an inverter model 101/102/103 (integer + scale factors), 111/112/113
  (float) or 701 (DER AC measurement); ratings from 120 (nameplate), 121 (settings) or 702 (DER
  capacity); storage 124 (basic storage controls) and/or 713 (DER storage capacity: SoC, SoH,
  WHRtg); controls 123 (immediate controls) and/or 704 (DER AC controls). Models may come in
  any order. AC voltage (701 ``LNV``/``LLV``, 10x ``PhVphA``/``PPVphAB``) and frequency
  (``Hz``) go to ``Telemetry.voltage_v`` / ``frequency_hz``.
- **Reads** apply scale factors (``value × 10^SF``); a "not implemented" marker in a required
  point, a scale factor outside -10..10 or a state of charge outside 0..100 % is a
  :class:`BadRegisterValueError`.
- **Writes** (only when the site config sets ``writable: true``; otherwise every write raises
  :class:`DriverReadOnlyError` and nothing is sent): a battery's power setpoint goes to 704
  ``WSet`` (watts mode) when present, else to 124 ``StorCtl_Mod`` + ``OutWRte``/``InWRte`` (% of
  ``WChaMax``); a PV inverter's curtailment goes to 704 ``WMaxLimPct`` or 123 ``WMaxLimPct``
  (% of ``WMax``). Every write is read back; the value the device reports is what ``apply``
  returns. ``revert`` disables the setpoint / limit (device's own default behaviour).
- **Mutual TLS** (Secure SunSpec Modbus, port 802): with a ``tls`` section the driver builds an
  SSL context from the configured CA, client certificate and key only. A missing file or a
  failed handshake fails closed (:class:`DeviceUnavailableError`); there is no fallback to a
  bundled or default certificate, and no plain-TCP fallback.

- **Meters** (``type: grid``; always read-only): models 201-204 give the power at the point of
  connection (``W`` > 0 = import = delivered to the site's bus), ``TotWhImp``/``TotWhExp``,
  voltage and frequency.
- **Short models**: a device may lay a model out shorter than its full definition down to its
  last non-pad point (the common model's optional ``Pad``: length 65); points past its ``L``
  read as "not implemented" and are never written.
- **Figures from the config**: capacity and ratings the device does not report (``capacity_wh``,
  ``rated_w``, ``max_charge_w``, ``max_discharge_w``); a config power figure can only lower the
  device's. :meth:`SunSpecDriver.control_report` says what the agent can drive and what a
  missing figure blocks.
- **Reverting** undoes only what this process wrote; a device never written is left as its
  owner set it (``gridswarm agent --check`` never writes at all).

What it does not (yet): SunSpec Modbus RTU (serial), float meters (211-214), multiple-MPPT 160,
DER curves (705-712: volt-var, freq-watt curves), storage models 802/803, writing ramp rates or
revert timers, float scale-factor-free storage models. The agent's own frequency response
drives the power setpoint instead of the inverter's freq-watt curve.

Errors: pymodbus exceptions never leave this module; they are mapped to the agent's types at
this boundary (``raise ... from exc``).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from pathlib import Path
from typing import Any

from pymodbus.client import AsyncModbusTcpClient, AsyncModbusTlsClient
from pymodbus.exceptions import ConnectionException, ModbusException, ModbusIOException

from agent.devices.spec import SunSpecBatteryConfig, SunSpecGridConfig, SunSpecPVConfig
from agent.drivers.base import (
    BadRegisterValueError,
    ControlReport,
    DeviceKind,
    DeviceLimits,
    DeviceNotSupportedError,
    DeviceUnavailableError,
    Driver,
    DriverError,
    DriverTimeoutError,
    Setpoint,
    Telemetry,
)
from agent.drivers.sunspec_models import SUNS, ModelLayout, Point, decode, encode, layout, min_length, pad_model
from gridswarm.clock import Clock

logger = logging.getLogger(__name__)
# pymodbus logs every failed request with a hex dump of recent frames; the driver logs device
# failures itself (once, on the transition), so keep pymodbus quiet unless configured otherwise.
if logging.getLogger("pymodbus").level == logging.NOTSET:
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)

__all__ = ["SunSpecDriver", "build_sunspec_driver", "tls_context"]

BASES = (40000, 0, 50000)
INVERTER_MODELS = (103, 102, 101, 113, 112, 111, 701)
METER_MODELS = (203, 204, 202, 201)  # three-phase wye / delta, split phase, single phase
OUTAGE_V = 20.0  # a meter that answers but measures less than this at the connection: the grid is down
MAX_READ = 120  # registers per request (Modbus allows 125)
_ILLEGAL = {2, 3}  # Modbus exception codes: illegal data address / value


def tls_context(tls: dict[str, Any]) -> ssl.SSLContext:
    """A client SSL context for mutual TLS from the configured files only (fails closed)."""
    keys = ("ca_file", "cert_file", "key_file")
    for key in keys:
        if not tls.get(key):
            raise DeviceUnavailableError(f"tls.{key} is required for TLS (no fallback certificate)")
    for key in keys:
        value = tls[key]
        if not Path(value).is_file():
            raise DeviceUnavailableError(f"tls.{key}: {value} does not exist (no fallback certificate)")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.check_hostname = True
    try:
        ctx.load_verify_locations(cafile=tls["ca_file"])
        ctx.load_cert_chain(certfile=tls["cert_file"], keyfile=tls["key_file"])
    except (ssl.SSLError, OSError) as exc:
        raise DeviceUnavailableError(f"TLS credentials unusable: {exc}") from exc
    return ctx


class SunSpecDriver(Driver):
    driver_name = "sunspec"

    def __init__(self, device_id: str, kind: DeviceKind, clock: Clock, *, host: str, port: int = 502,
                 unit_id: int = 1, base_addr: int | None = None, timeout_s: float = 1.0, writable: bool = False,
                 tls: dict[str, Any] | None = None, capacity_wh: float | None = None, rated_w: float | None = None,
                 max_charge_w: float | None = None, max_discharge_w: float | None = None,
                 import_limit_w: float | None = None, export_limit_w: float | None = None) -> None:
        if kind not in (DeviceKind.BATTERY, DeviceKind.PV, DeviceKind.GRID):
            raise ValueError(f"the sunspec driver drives battery and pv devices and reads grid meters, not {kind.value}")
        if kind is DeviceKind.GRID and writable:
            raise ValueError("a sunspec grid meter is read-only (writable must be false)")
        super().__init__(device_id, kind, writable=writable)
        # figures from the site config, used where the device does not report them
        self.config_figures = {k: None if v is None else float(v) for k, v in (
            ("capacity_wh", capacity_wh), ("rated_w", rated_w), ("max_charge_w", max_charge_w),
            ("max_discharge_w", max_discharge_w))}
        self.grid_limits = (import_limit_w, export_limit_w)
        self.figure_source: dict[str, str] = {}  # figure -> "device 713 WHRtg" / "config"
        self.clock = clock
        self.host = host
        self.port = port
        self.unit_id = unit_id
        self.base_addr = base_addr
        self.timeout_s = timeout_s
        self.tls = tls
        self._client: AsyncModbusTcpClient | None = None
        self.models: dict[int, int] = {}  # model id -> address of its ID register
        self.lengths: dict[int, int] = {}
        self.base: int | None = None
        self.inverter_model: int | None = None
        self.meter_model: int | None = None
        self.common: dict[str, Any] = {}
        self._limits = DeviceLimits(0.0, 0.0)
        self.rated_w = 0.0
        self.capacity_wh: float | None = None
        self.last_applied: float | None = None
        self._wrote = False  # has this process written a setpoint? (revert only undoes our own writes)
        self._lock = asyncio.Lock()

    # ------------------------------------------------------------------ transport

    @property
    def limits(self) -> DeviceLimits:
        return self._limits

    @property
    def _discovered(self) -> bool:
        return self.inverter_model is not None or self.meter_model is not None

    @property
    def _where(self) -> str:
        return f"{self.host}:{self.port} unit {self.unit_id}"

    @property
    def connected(self) -> bool:
        return self._client is not None and self._client.connected and self._discovered

    async def connect(self) -> None:
        if self.connected:
            return
        await self.close()
        if self.tls is not None:
            ctx = tls_context(self.tls)  # fails closed before any byte is sent
            client: AsyncModbusTcpClient = AsyncModbusTlsClient(
                self.host, port=self.port, sslctx=ctx, timeout=self.timeout_s, retries=0, reconnect_delay=0)
        else:
            client = AsyncModbusTcpClient(self.host, port=self.port, timeout=self.timeout_s, retries=0,
                                          reconnect_delay=0)
        try:
            ok = await asyncio.wait_for(client.connect(), self.timeout_s * 2)
        except (TimeoutError, OSError, ModbusException, ssl.SSLError) as exc:
            client.close()
            raise DeviceUnavailableError(f"cannot connect to {self.host}:{self.port}: {type(exc).__name__} {exc}",
                                         device_id=self.device_id) from exc
        if not ok:
            client.close()
            raise DeviceUnavailableError(f"cannot connect to {self.host}:{self.port}", device_id=self.device_id)
        self._client = client
        try:
            await self._discover()
        except DriverError:
            await self.close()
            raise

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            client.close()
        self.inverter_model = None
        self.meter_model = None

    async def _call(self, op: str, address: int, arg: Any) -> list[int]:
        client = self._client
        if client is None or not client.connected:
            self.inverter_model = self.meter_model = None
            raise DeviceUnavailableError(f"not connected to {self._where}", device_id=self.device_id)
        try:
            if op == "read":
                coro = client.read_holding_registers(address, count=arg, device_id=self.unit_id)
            else:
                coro = client.write_registers(address, arg, device_id=self.unit_id)
            rr = await asyncio.wait_for(coro, self.timeout_s * 1.5)
        except TimeoutError as exc:
            await self.close()
            raise DriverTimeoutError(f"no response from {self._where} after {self.timeout_s:g} s ({op} {address})",
                                     device_id=self.device_id) from exc
        except ConnectionException as exc:
            await self.close()
            raise DeviceUnavailableError(f"connection lost ({op} {address}): {exc}", device_id=self.device_id) from exc
        except ModbusIOException as exc:
            gone = not client.connected
            await self.close()
            if gone:
                raise DeviceUnavailableError(f"connection to {self._where} closed ({op} {address})",
                                             device_id=self.device_id) from exc
            raise DriverTimeoutError(f"no response from {self._where} after {self.timeout_s:g} s ({op} {address})",
                                     device_id=self.device_id) from exc
        except (ModbusException, OSError) as exc:
            await self.close()
            raise DeviceUnavailableError(f"{op} {address} on {self._where} failed: {type(exc).__name__}",
                                         device_id=self.device_id) from exc
        if rr.isError():
            code = getattr(rr, "exception_code", None)
            if code in _ILLEGAL:
                raise BadRegisterValueError(f"device refused {op} at {address} (Modbus exception {code})",
                                            device_id=self.device_id)
            raise DeviceUnavailableError(f"device error on {op} at {address} (Modbus exception {code})",
                                         device_id=self.device_id)
        return list(rr.registers) if op == "read" else []

    async def _read_regs(self, address: int, count: int) -> list[int]:
        out: list[int] = []
        while count > 0:
            n = min(count, MAX_READ)
            out += await self._call("read", address, n)
            address += n
            count -= n
        return out

    async def _write(self, address: int, values: list[int]) -> None:
        self._wrote = True
        await self._call("write", address, values)

    # ------------------------------------------------------------------ discovery

    async def _discover(self) -> None:
        bases = (self.base_addr,) if self.base_addr is not None else BASES
        base = None
        for b in bases:
            try:
                if tuple(await self._read_regs(b, 2)) == SUNS:
                    base = b
                    break
            except BadRegisterValueError:
                continue
        if base is None:
            raise DeviceNotSupportedError(f"no SunSpec marker at {', '.join(map(str, bases))}", device_id=self.device_id)
        self.base = base
        addr = base + 2
        models: dict[int, int] = {}
        lengths: dict[int, int] = {}
        for _ in range(64):
            mid, length = await self._read_regs(addr, 2)
            if mid == 0xFFFF:
                break
            models.setdefault(mid, addr)
            lengths.setdefault(mid, length)
            addr += 2 + length
        else:
            raise BadRegisterValueError("model chain has no end marker", device_id=self.device_id)
        for mid, length in lengths.items():
            try:
                need = min_length(mid)
            except KeyError:
                continue
            if length < need:
                raise BadRegisterValueError(f"model {mid} length {length} < {need} (its points do not fit)",
                                            device_id=self.device_id)
        self.models, self.lengths = models, lengths
        if 1 in models:
            regs = await self._model(1)
            self.common = {k: decode(regs, layout(1).points[k]) for k in ("Mn", "Md", "SN", "Vr")}
        if self.kind is DeviceKind.GRID:
            meter = next((m for m in METER_MODELS if m in models), None)
            if meter is None:
                raise DeviceNotSupportedError(f"no meter model 201-204 (found {sorted(models)})",
                                              device_id=self.device_id)
            self.meter_model = meter
            return
        inv = next((m for m in INVERTER_MODELS if m in models), None)
        if inv is None:
            raise DeviceNotSupportedError(f"no inverter model (found {sorted(models)})", device_id=self.device_id)
        if self.kind is DeviceKind.BATTERY and 124 not in models and 713 not in models:
            raise DeviceNotSupportedError(f"no storage model 124/713 (found {sorted(models)})", device_id=self.device_id)
        if self.kind is DeviceKind.BATTERY and 124 not in models and 704 not in models:
            raise DeviceNotSupportedError(f"no storage control model 124/704 (found {sorted(models)})",
                                          device_id=self.device_id)
        await self._ratings()
        self.inverter_model = inv

    async def _model(self, mid: int) -> list[int]:
        """The model's registers as the device lays them out, padded to the full layout (points
        past the device's ``L`` read as not implemented)."""
        n = min(self.lengths[mid], layout(mid).length) + 2
        return pad_model(mid, await self._read_regs(self.models[mid], n))

    def _scaled(self, regs: list[int], mid: int, name: str, *, required: bool = True) -> float | None:
        lay: ModelLayout = layout(mid)
        pt: Point = lay.points[name]
        raw = decode(regs, pt)
        if raw is None:
            if required:
                raise BadRegisterValueError(f"model {mid} {name} not implemented", device_id=self.device_id)
            return None
        if pt.sf is None:
            return float(raw)  # type: ignore[arg-type]
        if isinstance(pt.sf, int):
            sf = pt.sf
        else:
            sf_raw = decode(regs, lay.points[pt.sf])
            if sf_raw is None:
                if required:
                    raise BadRegisterValueError(f"model {mid} {pt.sf} not implemented", device_id=self.device_id)
                return None
            sf = int(sf_raw)  # type: ignore[arg-type]
        if not -10 <= sf <= 10:
            raise BadRegisterValueError(f"model {mid} {pt.sf} = {sf} is not a scale factor", device_id=self.device_id)
        return float(raw) * 10.0**sf  # type: ignore[arg-type]

    async def _ratings(self) -> None:
        """Power ratings and energy capacity from the device; the config fills what it lacks and
        can only lower a power rating the device reports (never drive a device past its own)."""
        src: dict[str, str] = {}
        rated = cha = dis = cap = None

        def take(current: float | None, value: float | None, where: str, name: str) -> float | None:
            if current is None and value is not None and value > 0:
                src[name] = where
                return value
            return current

        if 702 in self.models:
            r = await self._model(702)
            rated = take(rated, self._scaled(r, 702, "WMax", required=False), "device 702 WMax", "rated_w")
            rated = take(rated, self._scaled(r, 702, "WMaxRtg", required=False), "device 702 WMaxRtg", "rated_w")
            cha = take(cha, self._scaled(r, 702, "WChaRteMaxRtg", required=False), "device 702 WChaRteMaxRtg",
                       "max_charge_w")
            dis = take(dis, self._scaled(r, 702, "WDisChaRteMaxRtg", required=False), "device 702 WDisChaRteMaxRtg",
                       "max_discharge_w")
        if 121 in self.models:
            rated = take(rated, self._scaled(await self._model(121), 121, "WMax", required=False), "device 121 WMax",
                         "rated_w")
        if 120 in self.models:
            r = await self._model(120)
            rated = take(rated, self._scaled(r, 120, "WRtg", required=False), "device 120 WRtg", "rated_w")
            cap = take(cap, self._scaled(r, 120, "WHRtg", required=False), "device 120 WHRtg", "capacity_wh")
            cha = take(cha, self._scaled(r, 120, "MaxChaRte", required=False), "device 120 MaxChaRte", "max_charge_w")
            dis = take(dis, self._scaled(r, 120, "MaxDisChaRte", required=False), "device 120 MaxDisChaRte",
                       "max_discharge_w")
        if self.kind is DeviceKind.BATTERY and 124 in self.models:
            wcha = self._scaled(await self._model(124), 124, "WChaMax", required=False)
            cha = take(cha, wcha, "device 124 WChaMax", "max_charge_w")
            dis = take(dis, wcha, "device 124 WChaMax", "max_discharge_w")
            rated = take(rated, wcha, "device 124 WChaMax", "rated_w")
        if self.kind is DeviceKind.BATTERY and 713 in self.models:
            whrtg = self._scaled(await self._model(713), 713, "WHRtg", required=False)
            if whrtg is not None and whrtg > 0:
                cap, src["capacity_wh"] = whrtg, "device 713 WHRtg"
        conf = self.config_figures
        for name, dev in (("rated_w", rated), ("max_charge_w", cha), ("max_discharge_w", dis)):
            value = conf[name]
            if value is None:
                continue
            if dev is None:
                src[name] = "config"
            elif value < dev:
                src[name] = f"config (device reports {dev:.0f} W)"
            elif value > dev:
                logger.warning("%s: config %s %.0f W above the device's %.0f W; using the device's", self.device_id,
                               name, value, dev)
        pick = {n: (min(d, conf[n]) if d is not None and conf[n] is not None else d if d is not None else conf[n])
                for n, d in (("rated_w", rated), ("max_charge_w", cha), ("max_discharge_w", dis))}
        rated, cha, dis = pick["rated_w"], pick["max_charge_w"], pick["max_discharge_w"]
        if cap is None and conf["capacity_wh"] is not None:
            cap, src["capacity_wh"] = conf["capacity_wh"], "config"
        elif cap is not None and conf["capacity_wh"] is not None and abs(cap - conf["capacity_wh"]) > 1e-6:
            logger.warning("%s: config capacity_wh %.0f Wh differs from the device's %.0f Wh; using the device's",
                           self.device_id, conf["capacity_wh"], cap)
        if rated is None and self.kind is DeviceKind.BATTERY:
            rated = max(cha or 0.0, dis or 0.0) or None
        if not rated or rated <= 0:
            raise BadRegisterValueError("no power rating: the device reports none of 702 WMax/WMaxRtg, 121 WMax, "
                                        "120 WRtg, 124 WChaMax; set rated_w in the config", device_id=self.device_id)
        self.rated_w = rated
        self.capacity_wh = cap
        self.figure_source = src
        if self.kind is DeviceKind.BATTERY:
            self._limits = DeviceLimits(-min(rated, cha or rated), min(rated, dis or rated))
        else:
            self._limits = DeviceLimits(0.0, rated)

    def describe(self) -> str:
        if not self._discovered:
            return f"sunspec {self.kind.value} at {self._where} (not discovered)"
        models = ",".join(str(m) for m in self.models)
        head = (f"sunspec {self.kind.value} {self.common.get('Mn', '?')} {self.common.get('Md', '?')} "
                f"SN {self.common.get('SN', '?')} at {self._where}: models {models}")
        if self.kind is DeviceKind.GRID:
            return f"{head}; meter {self.meter_model}; read-only"
        figures = "; ".join(f"{k} from {v}" for k, v in sorted(self.figure_source.items()))
        return (f"{head}; rated {self.rated_w:.0f} W; {'writable' if self.writable else 'read-only'}"
                + (f"; {figures}" if figures else ""))

    def discovered_models(self) -> tuple[int, ...]:
        return tuple(self.models)

    def control_report(self) -> ControlReport:
        """What the agent drives on this device, what it cannot and which missing figure blocks what."""
        if self.kind is DeviceKind.GRID:
            return ControlReport((), ("power: a grid meter is measured, never written",))
        if not self._discovered:
            return ControlReport((), ("everything: the device was not discovered (see the error)",))
        m = self.models
        controls: list[str] = []
        cannot: list[str] = []
        missing: dict[str, str] = {}
        if self.kind is DeviceKind.BATTERY:
            if 704 in m:
                how = "704 WSet (watts)"
            elif 124 in m:
                how = "124 StorCtl_Mod + InWRte/OutWRte (% of WChaMax)"
            else:
                how = None
            if self.capacity_wh is None:
                missing["capacity_wh"] = ("blocks dispatch (market schedules, virtual battery, self-consumption): "
                                          "the device reports no 713 WHRtg or 120 WHRtg; set capacity_wh in the config")
            if how is None:
                cannot.append("charge/discharge: no storage control model (124 or 704)")
            elif not self.writable:
                cannot.append(f"charge/discharge via {how}: read-only (set writable: true in the config)")
            elif missing:
                cannot.append(f"charge/discharge via {how}: blocked by missing {', '.join(missing)}")
            else:
                controls.append(f"charge/discharge within [{self._limits.min_w:.0f}, {self._limits.max_w:.0f}] W "
                                f"via {how}")
            cannot.append("ramp rates, revert timers, volt-var/freq-watt curves: not written by the agent")
        else:
            how = "704 WMaxLimPct" if 704 in m else "123 WMaxLimPct" if 123 in m else None
            if how is None:
                cannot.append("curtailment: no control model (123 or 704)")
            elif not self.writable:
                cannot.append(f"curtailment via {how}: read-only (set writable: true in the config)")
            else:
                controls.append(f"curtailment within [0, {self._limits.max_w:.0f}] W via {how} (% of rating)")
        return ControlReport(tuple(controls), tuple(cannot), missing)

    # ------------------------------------------------------------------ read

    async def _ensure(self) -> None:
        if not self.connected:
            await self.connect()

    async def _read(self) -> Telemetry:
        async with self._lock:
            await self._ensure()
            return await self._read_locked()

    def _voltage(self, r: list[int], mid: int) -> float | None:
        """AC RMS voltage: line-to-neutral when the model has it, else line-to-line."""
        names = {701: ("LNV", "LLV"), 101: ("PhVphA", "PPVphAB"), 102: ("PhVphA", "PPVphAB"),
                 103: ("PhVphA", "PPVphAB"), 111: ("PhVphA", "PPVphAB"), 112: ("PhVphA", "PPVphAB"),
                 113: ("PhVphA", "PPVphAB")}.get(mid, ("PhV", "PPV"))
        for name in names:
            if name in layout(mid).points:
                v = self._scaled(r, mid, name, required=False)
                if v is not None:
                    if not 0.0 <= v <= 100_000.0:
                        raise BadRegisterValueError(f"model {mid} {name} = {v:g} V is not a voltage",
                                                    device_id=self.device_id)
                    return v
        return None

    def _frequency(self, r: list[int], mid: int) -> float | None:
        hz = self._scaled(r, mid, "Hz", required=False)
        if hz == 0.0:
            return None  # no voltage to measure a frequency on (a dead grid)
        if hz is not None and not 0.0 < hz < 1_000.0:
            raise BadRegisterValueError(f"model {mid} Hz = {hz:g} is not a frequency", device_id=self.device_id)
        return hz

    async def _read_meter(self) -> Telemetry:
        mid = self.meter_model
        assert mid is not None
        r = await self._model(mid)
        w = self._scaled(r, mid, "W")
        assert w is not None
        hz = self._frequency(r, mid)
        imp = self._scaled(r, mid, "TotWhImp", required=False)
        exp = self._scaled(r, mid, "TotWhExp", required=False)
        detail: dict[str, Any] = {"meter_model": mid}
        lim_imp, lim_exp = self.grid_limits
        if lim_imp is not None and lim_exp is not None:
            detail["import_limit_w"], detail["export_limit_w"] = lim_imp, lim_exp
        if hz is not None:
            detail["frequency_hz"] = hz
        volts = self._voltage(r, mid)
        # SunSpec meter W > 0 = power imported from the grid = delivered to the site's bus
        return Telemetry(
            device_id=self.device_id, kind=self.kind.value, ts=self.clock.now(), power_w=w,
            available_discharge_w=max(0.0, lim_imp) if lim_imp is not None else 0.0,
            available_charge_w=max(0.0, lim_exp) if lim_exp is not None else 0.0,
            energy_out_wh=imp, energy_in_wh=exp, voltage_v=volts, frequency_hz=hz, detail=detail,
            status="outage" if volts is not None and volts < OUTAGE_V else "ok",
        )

    def measures_frequency(self, last: Telemetry | None) -> bool:
        return last is not None and "frequency_hz" in last.detail

    async def read_frequency(self) -> float | None:
        """The fast path's light read: the ``Hz`` of the inverter model (701 or 10x) or, for a
        grid meter, of its meter model (20x) — one Modbus request; None when not implemented or
        when there is no voltage to measure a frequency on."""
        async with self._lock:
            await self._ensure()
            mid = self.meter_model if self.kind is DeviceKind.GRID else self.inverter_model
            assert mid is not None
            return self._frequency(await self._model(mid), mid)

    async def _read_locked(self) -> Telemetry:
        if self.kind is DeviceKind.GRID:
            return await self._read_meter()
        inv = self.inverter_model
        assert inv is not None
        r = await self._model(inv)
        power = self._scaled(r, inv, "W")
        assert power is not None
        detail: dict[str, Any] = {"inverter_model": inv, "rated_w": self.rated_w}
        hz = self._frequency(r, inv)
        if hz is not None:
            detail["frequency_hz"] = hz
        volts = self._voltage(r, inv)
        temp = self._scaled(r, inv, "TmpCab", required=False)
        if inv == 701:
            e_out = self._scaled(r, 701, "TotWhInj", required=False)
            e_in = self._scaled(r, 701, "TotWhAbs", required=False)
        else:
            e_out = self._scaled(r, inv, "WH", required=False)
            e_in = None
        if abs(power) > self.rated_w * 1.5:
            raise BadRegisterValueError(f"power {power:.0f} W beyond 1.5 x rating", device_id=self.device_id)
        soc = soh = None
        chg_avail = dis_avail = 0.0
        if self.kind is DeviceKind.BATTERY:
            reserve = 0.0
            if 713 in self.models:
                s = await self._model(713)
                pct = self._scaled(s, 713, "SoC")
                soh_pct = self._scaled(s, 713, "SoH", required=False)
                soh = soh_pct / 100.0 if soh_pct is not None and 0 < soh_pct <= 100 else None
            else:
                s = await self._model(124)
                pct = self._scaled(s, 124, "ChaState")
                reserve = self._scaled(s, 124, "MinRsvPct", required=False) or 0.0
            assert pct is not None
            if not 0.0 <= pct <= 100.0:
                raise BadRegisterValueError(f"state of charge {pct:g} % outside 0..100", device_id=self.device_id)
            soc = pct / 100.0
            detail["device_reserve_soc"] = reserve / 100.0
            detail["soc_min"] = reserve / 100.0
            detail["soc_max"] = 1.0
            dis_avail = self._limits.max_w if soc > reserve / 100.0 + 1e-3 else 0.0
            chg_avail = -self._limits.min_w if soc < 0.999 else 0.0
            setpoint = self.last_applied
        else:
            setpoint = self.last_applied if self.last_applied is not None else self._limits.max_w
            curtailed = self.last_applied is not None and self.last_applied < self._limits.max_w
            dis_avail = self._limits.max_w if curtailed else max(0.0, power)  # uncurtailed output unknown
        return Telemetry(
            device_id=self.device_id, kind=self.kind.value, ts=self.clock.now(), power_w=power, setpoint_w=setpoint,
            available_discharge_w=dis_avail, available_charge_w=chg_avail, soc=soc,
            energy_wh=soc * self.capacity_wh if soc is not None and self.capacity_wh else None,
            capacity_wh=self.capacity_wh if soc is not None else None, temperature_c=temp, soh=soh,
            energy_out_wh=e_out, energy_in_wh=e_in, voltage_v=volts, frequency_hz=hz, detail=detail,
        )

    # ------------------------------------------------------------------ write

    async def _put(self, mid: int, values: dict[str, float | int]) -> None:
        """Write points of one model in as few contiguous requests as possible."""
        lay = layout(mid)
        base = self.models[mid]
        items = sorted(((lay.points[k], v) for k, v in values.items()), key=lambda x: x[0].offset)
        for pt, _ in items:
            if pt.offset + pt.size > self.lengths[mid] + 2:
                raise BadRegisterValueError(f"model {mid} {pt.name} not implemented (model length {self.lengths[mid]})",
                                            device_id=self.device_id)
        run: list[int] = []
        start = None
        for pt, v in items:
            try:
                regs = encode(v, pt)
            except ValueError as exc:
                raise BadRegisterValueError(str(exc), device_id=self.device_id) from exc
            if start is not None and pt.offset == start + len(run):
                run += regs
            else:
                if start is not None:
                    await self._write(base + start, run)
                start, run = pt.offset, regs
        if start is not None:
            await self._write(base + start, run)

    def _sf(self, regs: list[int], mid: int, sf_name: str) -> int:
        sf = decode(regs, layout(mid).points[sf_name])
        if sf is None:
            raise BadRegisterValueError(f"model {mid} {sf_name} not implemented: the device cannot take this setpoint",
                                        device_id=self.device_id)
        if not -10 <= int(sf) <= 10:  # type: ignore[arg-type]
            raise BadRegisterValueError(f"model {mid} {sf_name} = {sf} is not a scale factor", device_id=self.device_id)
        return int(sf)  # type: ignore[arg-type]

    async def _apply(self, setpoint: Setpoint) -> float:
        async with self._lock:
            await self._ensure()
            p = setpoint.power_w
            if self.kind is DeviceKind.BATTERY:
                applied = await self._apply_storage(p)
            else:
                applied = await self._apply_pv(p)
            self.last_applied = applied
            return applied

    async def _apply_storage(self, p: float) -> float:
        if 704 in self.models:
            r = await self._model(704)
            sf = self._sf(r, 704, "WSet_SF")
            raw = round(p / 10.0**sf)
            await self._put(704, {"WSetEna": 1, "WSetMod": 1, "WSet": raw})
            back = await self._model(704)
            if decode(back, layout(704).points["WSetEna"]) != 1:
                return 0.0
            return float(decode(back, layout(704).points["WSet"]) or 0) * 10.0**sf
        r = await self._model(124)
        wcha = self._scaled(r, 124, "WChaMax")
        assert wcha is not None
        sf = self._sf(r, 124, "InOutWRte_SF")
        pct = abs(p) / wcha * 100.0 if wcha > 0 else 0.0
        raw = round(pct / 10.0**sf)
        mode = 2 if p > 0 else 1 if p < 0 else 0
        await self._put(124, {"OutWRte": raw if p > 0 else 0, "InWRte": raw if p < 0 else 0})
        await self._put(124, {"StorCtl_Mod": mode})
        back = await self._model(124)
        lay = layout(124).points
        mod = decode(back, lay["StorCtl_Mod"]) or 0
        out = float(decode(back, lay["OutWRte"]) or 0) * 10.0**sf / 100.0 * wcha
        inn = float(decode(back, lay["InWRte"]) or 0) * 10.0**sf / 100.0 * wcha
        return (out if mod & 2 else 0.0) - (inn if mod & 1 else 0.0)  # type: ignore[operator]

    async def _apply_pv(self, p: float) -> float:
        full = p >= self._limits.max_w - 1e-6
        if 704 in self.models:
            mid, ena, pct_name = 704, "WMaxLimPctEna", "WMaxLimPct"
        elif 123 in self.models:
            mid, ena, pct_name = 123, "WMaxLim_Ena", "WMaxLimPct"
        else:
            raise DeviceNotSupportedError("no control model (123/704) to curtail", device_id=self.device_id)
        r = await self._model(mid)
        sf = self._sf(r, mid, "WMaxLimPct_SF")
        if full:
            await self._put(mid, {ena: 0})
        else:
            raw = round(p / self.rated_w * 100.0 / 10.0**sf)
            await self._put(mid, {pct_name: raw})
            await self._put(mid, {ena: 1})
        back = await self._model(mid)
        if decode(back, layout(mid).points[ena]) != 1:
            return self._limits.max_w
        return float(decode(back, layout(mid).points[pct_name]) or 0) * 10.0**sf / 100.0 * self.rated_w

    async def _revert(self) -> float:
        async with self._lock:
            if not self._wrote:  # never wrote: leave the device in the mode its owner set
                self.last_applied = None
                return 0.0 if self.kind is DeviceKind.BATTERY else self._limits.max_w
            await self._ensure()
            if self.kind is DeviceKind.BATTERY:
                if 704 in self.models:
                    await self._put(704, {"WSetEna": 0})
                if 124 in self.models:
                    await self._put(124, {"StorCtl_Mod": 0})
                self.last_applied = None
                self._wrote = False
                return 0.0
            if 704 in self.models:
                await self._put(704, {"WMaxLimPctEna": 0})
            if 123 in self.models:
                await self._put(123, {"WMaxLim_Ena": 0})
            self.last_applied = None
            self._wrote = False
            return self._limits.max_w


def build_sunspec_driver(spec: SunSpecBatteryConfig | SunSpecPVConfig | SunSpecGridConfig, clock: Clock) -> SunSpecDriver:
    """A driver from a validated ``driver: sunspec`` device config (:mod:`agent.devices.spec`)."""
    figures = spec.model_dump(include={"capacity_wh", "rated_w", "max_charge_w", "max_discharge_w",
                                       "import_limit_w", "export_limit_w"})
    return SunSpecDriver(spec.id or spec.type, DeviceKind(spec.type), clock, host=spec.host, port=spec.port,
                         unit_id=spec.unit_id, base_addr=spec.base_addr, timeout_s=spec.timeout_s,
                         writable=spec.writable, tls=spec.tls.model_dump() if spec.tls else None, **figures)
