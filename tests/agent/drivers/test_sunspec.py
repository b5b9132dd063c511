"""SunSpec driver specifics: discovery, cross-check with pysunspec2's own client, read-only by
default through the site config, device-side refusals, mutual TLS that fails closed."""

import asyncio
import contextlib
import ssl
import subprocess

import pytest
import sunspec2.modbus.client as ss_client

from agent.drivers.base import (
    BadRegisterValueError,
    DeviceKind,
    DeviceNotSupportedError,
    DeviceUnavailableError,
    Setpoint,
)
from agent.drivers.sunspec import SunSpecDriver, tls_context
from agent.drivers.sunspec_sim import SunSpecSimDevice, free_port
from agent.site import Site
from gridswarm.clock import ManualClock

T0 = 1_750_000_000.0 + 2 * 3600


@contextlib.asynccontextmanager
async def served(clock, **kw):
    device = SunSpecSimDevice(clock, **kw)
    await device.start()
    try:
        yield device
    finally:
        await device.stop()


def pysunspec_read(port, *, model, points):
    """Read the device with pysunspec2's own client (blocking; run in a thread)."""
    d = ss_client.SunSpecModbusClientDeviceTCP(slave_id=1, ipaddr="127.0.0.1", ipport=port, timeout=2)
    try:
        d.scan()
        m = d.models[model][0]
        m.read()
        return {p: getattr(m, p).cvalue for p in points}, sorted(k for k in d.models if isinstance(k, int))
    finally:
        d.close()


@pytest.mark.parametrize(("inverter_model", "controls"), [(103, (123,)), (103, (704,)), (701, (704,))])
def test_battery_cross_checked_with_pysunspec2(inverter_model, controls):
    async def main():
        clock = ManualClock(T0)
        async with served(clock, kind="battery", inverter_model=inverter_model, controls=controls) as dev:
            drv = SunSpecDriver("b", DeviceKind.BATTERY, clock, host="127.0.0.1", port=dev.port, writable=True)
            await drv.connect()
            assert drv.inverter_model == inverter_model
            await drv.apply(Setpoint(-3_000.0))
            clock.advance(900)
            ours = await drv.read()
            soc_model, soc_point = (124, "ChaState") if inverter_model == 103 else (713, "SoC")
            theirs, found = await asyncio.to_thread(pysunspec_read, dev.port, model=inverter_model, points=["W"])
            soc, _ = await asyncio.to_thread(pysunspec_read, dev.port, model=soc_model, points=[soc_point])
            assert ours.power_w == pytest.approx(theirs["W"]) == pytest.approx(-3_000.0, abs=10)
            assert ours.soc * 100 == pytest.approx(soc[soc_point])
            assert set(drv.models) == set(found)
            if 704 in controls:
                ctl, _ = await asyncio.to_thread(pysunspec_read, dev.port, model=704, points=["WSetEna", "WSet"])
                assert ctl == {"WSetEna": 1, "WSet": -3_000}
            else:
                ctl, _ = await asyncio.to_thread(pysunspec_read, dev.port, model=124,
                                                 points=["StorCtl_Mod", "InWRte"])
                assert ctl == {"StorCtl_Mod": 1, "InWRte": pytest.approx(60.0)}
            await drv.close()

    asyncio.run(main())


def test_pv_curtailment_cross_checked_with_pysunspec2():
    async def main():
        clock = ManualClock(T0)
        async with served(clock, kind="pv", controls=(123,)) as dev:
            drv = SunSpecDriver("p", DeviceKind.PV, clock, host="127.0.0.1", port=dev.port, writable=True)
            await drv.connect()
            await drv.apply(Setpoint(1_250.0))
            ctl, _ = await asyncio.to_thread(pysunspec_read, dev.port, model=123, points=["WMaxLimPct", "WMaxLim_Ena"])
            assert ctl == {"WMaxLimPct": pytest.approx(25.0), "WMaxLim_Ena": 1}
            await drv.close()

    asyncio.run(main())


@pytest.mark.parametrize("base", [0, 50000])
def test_discovery_tries_the_standard_base_addresses(base):
    async def main():
        clock = ManualClock(T0)
        async with served(clock, kind="battery", base=base) as dev:
            drv = SunSpecDriver("b", DeviceKind.BATTERY, clock, host="127.0.0.1", port=dev.port)
            await drv.connect()
            assert drv.base == base and drv.common["SN"] == "GS-SIM-0001"
            await drv.close()

    asyncio.run(main())


def test_a_device_without_the_models_we_need_is_not_supported():
    async def main():
        clock = ManualClock(T0)
        async with served(clock, kind="pv") as dev:  # no storage model
            drv = SunSpecDriver("b", DeviceKind.BATTERY, clock, host="127.0.0.1", port=dev.port)
            with pytest.raises(DeviceNotSupportedError, match="storage model"):
                await drv.connect()

    asyncio.run(main())


def test_nobody_listening_is_unavailable():
    async def main():
        drv = SunSpecDriver("b", DeviceKind.BATTERY, ManualClock(T0), host="127.0.0.1", port=free_port(),
                            timeout_s=0.2)
        with pytest.raises(DeviceUnavailableError):
            await drv.read()

    asyncio.run(main())


def test_device_refusal_is_a_bad_register_value_and_changes_nothing():
    async def main():
        clock = ManualClock(T0)
        async with served(clock, kind="pv", controls=(123,)) as dev:
            drv = SunSpecDriver("p", DeviceKind.PV, clock, host="127.0.0.1", port=dev.port, writable=True)
            await drv.connect()
            writes = dev.writes
            with pytest.raises(BadRegisterValueError):
                await drv._put(123, {"WMaxLimPct": 2_000, "WMaxLim_Ena": 1})  # 200 %: the device refuses
            with pytest.raises(BadRegisterValueError):
                await drv._put(103, {"W": 5})  # read-only point
            assert dev.writes == writes and dev.limit_pct is None
            await drv.close()

    asyncio.run(main())


def test_site_config_keeps_a_sunspec_device_read_only_until_allowed():
    async def main():
        clock = ManualClock(T0)
        async with served(clock, kind="battery") as dev:
            grid = {"type": "grid"}
            load = {"type": "load", "profile": "household"}
            ro = {"type": "battery", "driver": "sunspec", "host": "127.0.0.1", "port": dev.port, "timeout_s": 0.5}
            site = Site.from_config([ro, load, grid], clock, seed=1, reserve_soc=0.2)
            [probe, *_] = await site.check()
            assert probe.ok and not probe.writable and "models 1,103,120,121,124,123" in probe.detail
            st = await site.tick()
            assert dev.writes == 0 and "battery1" not in st.applied
            await site.close()
            site = Site.from_config([{**ro, "writable": True}, load, grid], clock, seed=1, reserve_soc=0.2)
            st = await site.tick()
            assert dev.writes > 0 and st.applied["battery1"] > 0  # self-consumption covers the load
            clock.advance(60)
            st2 = await site.tick()
            assert st2.devices["battery1"].power_w == pytest.approx(st.applied["battery1"], abs=10)
            await site.close()
            assert dev.requested_w == 0.0  # closing reverts the device to its safe default

    asyncio.run(main())


# ------------------------------------------------------------------ TLS


def _openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def _make_ca(tmp, name):
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.pem",
             "-days", "2", "-subj", f"/CN={name}", cwd=tmp)


def _make_cert(tmp, ca, name, *, server):
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
             "-subj", f"/CN={name}", cwd=tmp)
    ext = tmp / f"{name}.ext"
    ext.write_text("subjectAltName=IP:127.0.0.1\n" if server else "extendedKeyUsage=clientAuth\n")
    _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key", "-CAcreateserial",
             "-out", f"{name}.pem", "-days", "2", "-extfile", str(ext), cwd=tmp)


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pki")
    _make_ca(tmp, "ca")
    _make_ca(tmp, "rogue")
    _make_cert(tmp, "ca", "server", server=True)
    _make_cert(tmp, "ca", "client", server=False)
    _make_cert(tmp, "rogue", "intruder", server=False)
    return tmp


def _server_ctx(pki):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(pki / "server.pem", pki / "server.key")
    ctx.load_verify_locations(pki / "ca.pem")
    ctx.verify_mode = ssl.CERT_REQUIRED  # mutual: the client must present a certificate
    return ctx


def test_tls_config_without_files_fails_closed(tmp_path):
    with pytest.raises(DeviceUnavailableError, match="tls.cert_file is required"):
        tls_context({"ca_file": str(tmp_path / "x")})
    with pytest.raises(DeviceUnavailableError, match="does not exist"):
        tls_context({"ca_file": str(tmp_path / "x"), "cert_file": "y", "key_file": "z"})


@pytest.mark.parametrize(("client", "ok"), [("client", True), ("intruder", False)])
def test_mutual_tls(pki, client, ok):
    async def main():
        clock = ManualClock(T0)
        device = SunSpecSimDevice(clock, kind="battery")
        await device.start(sslctx=_server_ctx(pki))
        tls = {"ca_file": str(pki / "ca.pem"), "cert_file": str(pki / f"{client}.pem"),
               "key_file": str(pki / f"{client}.key")}
        drv = SunSpecDriver("b", DeviceKind.BATTERY, clock, host="127.0.0.1", port=device.port, tls=tls, timeout_s=1.0)
        try:
            if ok:
                tel = await drv.read()
                assert tel.soc == pytest.approx(0.5)
            else:
                with pytest.raises(DeviceUnavailableError):
                    await drv.read()
        finally:
            await drv.close()
            await device.stop()

    asyncio.run(main())


def test_tls_client_refuses_a_server_it_cannot_verify(pki):
    async def main():
        clock = ManualClock(T0)
        device = SunSpecSimDevice(clock, kind="battery")
        await device.start(sslctx=_server_ctx(pki))
        tls = {"ca_file": str(pki / "rogue.pem"), "cert_file": str(pki / "client.pem"),
               "key_file": str(pki / "client.key")}
        drv = SunSpecDriver("b", DeviceKind.BATTERY, clock, host="127.0.0.1", port=device.port, tls=tls, timeout_s=1.0)
        try:
            with pytest.raises(DeviceUnavailableError):
                await drv.read()
        finally:
            await drv.close()
            await device.stop()

    asyncio.run(main())
