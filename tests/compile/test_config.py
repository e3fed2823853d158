"""Loading and validating VTA configs."""

import json

import pytest

from compile.vta.config import CONFIG_DIR, available_configs, config_from_dict, load_config
from jaxlic.errors import VTAConfigError

SHIPPED = ["de10nano", "pynq", "sim", "ultra96", "zcu104", "zcu104_block32"]


def test_shipped_configs_load_and_round_trip():
    assert set(SHIPPED) <= set(available_configs())
    for name in SHIPPED:
        config = load_config(name)
        assert config_from_dict(config.to_json(), name) == config
        assert config.to_json() == json.loads((CONFIG_DIR / f"{name}.json").read_text())


def test_default_geometry_matches_spec():
    config = load_config("pynq")
    assert config.bitstream_name == "1x16_i8w8a32_15_15_18_17"
    assert (config.inp_elem_bytes, config.wgt_elem_bytes, config.acc_elem_bytes) == (16, 256, 64)
    assert (config.uop_depth, config.inp_depth, config.wgt_depth, config.acc_depth) == (8192, 2048, 1024, 2048)
    assert (config.uop_index_bits, config.inp_index_bits, config.wgt_index_bits, config.acc_index_bits) == (13, 11, 10, 11)
    assert config.macs_per_cycle == 256 and config.board.clock_mhz == 100 and config.bus_bytes_per_cycle == 8
    assert config.board.registers["compute"] == 0x43C02000
    assert load_config("ultra96").board.axi_bus_bits == 128


def test_block32_is_bigger():
    config = load_config("zcu104_block32")
    assert config.macs_per_cycle == 1024 and config.board.hypothetical
    assert config.bitstream_name == "1x32_i8w8a32_15_16_20_18"


def _write(tmp_path, data):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data) if not isinstance(data, str) else data)
    return path


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d.pop("LOG_BLOCK"), "missing field"),
    (lambda d: d.update(LOG_BLOCK="4"), "LOG_BLOCK must be an integer"),
    (lambda d: d.update(LOG_BLOCK=9), "LOG_BLOCK=9 is outside"),
    (lambda d: d.update(LOG_INP_WIDTH=2), "int8 activations only"),
    (lambda d: d.update(TARGET="vc707"), "TARGET must be one of"),
    (lambda d: d.update(HW_VER=2), "HW_VER must look like"),
    (lambda d: d.update(LOG_BLOK=4), "unknown field"),
    (lambda d: d.pop("board"), "missing field"),
    (lambda d: d["board"].update(clock_mhz=-3), "clock_mhz"),
    (lambda d: d["board"].update(axi_bus_bits=48), "axi_bus_bits"),
    (lambda d: d["board"]["registers"].pop("store"), "registers must map"),
    (lambda d: d["board"]["registers"].update(store="43C03000"), "hex string"),
    (lambda d: d["board"].update(colour="red"), "unknown board field"),
    (lambda d: d.update(LOG_ACC_BUFF_SIZE=20), "index fields that do not fit"),
    (lambda d: d.update(LOG_INP_BUFF_SIZE=4), "fewer than two"),
])
def test_malformed_configs_are_rejected(tmp_path, mutate, message):
    data = load_config("pynq").to_json()
    mutate(data)
    with pytest.raises(VTAConfigError, match=message):
        load_config(_write(tmp_path, data))


def test_unreadable_and_missing_files(tmp_path):
    with pytest.raises(VTAConfigError, match="not valid JSON"):
        load_config(_write(tmp_path, "{not json"))
    with pytest.raises(VTAConfigError, match="no VTA config"):
        load_config("no_such_board")
    with pytest.raises(VTAConfigError, match="JSON object"):
        load_config(_write(tmp_path, [1, 2]))
