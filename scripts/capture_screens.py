#!/usr/bin/env python3
"""Capture labelled real screenshots from Debian-packaged games under Xvfb.

    apt-get install -y --no-install-recommends xvfb xdotool minetest minetest-data
    python scripts/capture_screens.py minetest --shots 300 --out build/vision/real/minetest
    apt-get install -y --no-install-recommends flare-game
    python scripts/capture_screens.py flare --per-spot 3 --out build/vision/real/flare

Minetest: a throw-away world gets a small world mod (written below) that drives the game from the
inside: it teleports the player to random surface spots, reads the biome there (-> place), sets the
time of day (-> time), the player's HP (-> player, shown by the hearts HUD), optionally builds a
closed room of wood / cobble / stone brick / stone around the player with torches (-> indoor), or
sets a fire a few nodes ahead (-> danger fire). For each set-up it writes ``ready.json`` into the
world folder; this script grabs the X display, saves the PNG and writes ``ack``; the mod then checks
the HP did not change meanwhile and appends the label line. Labels therefore come from the set-up,
not from looking at the picture. Creatures are not labelled (minetest_game has none); weather is
"clear" outdoors (minetest_game draws no weather).

    apt-get install -y --no-install-recommends wesnoth-1.16-core
    python scripts/capture_screens.py wesnoth --shots 150 --seed 1 --out build/vision/real/wesnoth

Wesnoth (top-down hex maps, a third art style): a generated one-scenario campaign add-on walks a plan
made here from the multiplayer maps: per shot it loads a map, sets Wesnoth's own time-of-day tint
(morning / afternoon -> day, dusk -> dusk, first / second watch -> night; dawn is not used), places a
few units near the view centre (-> creatures) and scrolls there. A view whose hexes are >= 70% cave /
interior terrain is indoor (underground tint, time unlabelled), one with <= 5% is outdoor; the place is
the dominant terrain class where it covers half the view. Multiplayer maps draw no weather, so an
outdoor view's weather is "clear".

Flare draws weather on some maps: a map file's ``parallax_layers`` names a rain, snow or fog overlay
(``maps/parallax/rain.txt``); an outdoor frame's weather is that, or "clear" without one.

    python scripts/capture_screens.py relabel --game flare

rewrites a captured game's weather and danger labels by these rules without capturing again
(labels.jsonl keeps each frame's map or set-up in ``meta``). Danger: Minetest's script sets its fires; a
Wesnoth view without units near its centre shows no danger; Flare's is unknown (monsters roam).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from PIL import ImageGrab

MOD_LUA = r"""
local wp = minetest.get_worldpath()
local cfg = minetest.parse_json(io.open(wp .. "/capture.json"):read("*a"))
local rng = PcgRandom(cfg.seed)
local shot = 0
local function rf(a, b) return a + (b - a) * (rng:next(0, 100000) / 100000) end

local function place_of(biome)
  if not biome then return nil end
  if biome:find("ocean") then return "sea" end
  if biome:find("shore") or biome:find("dunes") then return "beach" end
  if biome:find("forest") or biome:find("rainforest") or biome == "taiga" then
    if biome == "taiga" then return "snow" end
    return "forest" end
  if biome:find("desert") then return "desert" end
  if biome:find("snow") or biome:find("tundra") or biome:find("ice") or biome:find("taiga") then return "snow" end
  if biome:find("grassland") or biome:find("savanna") then return "field" end
  return nil
end

local function time_for(kind)
  if kind == "day" then return rf(0.30, 0.70) end
  if kind == "dusk" then return rf(0.785, 0.805) end
  if rng:next(0, 1) == 0 then return rf(0.86, 0.99) end
  return rf(0.01, 0.15)
end

local function surface(x, z)
  for y = 90, -20, -1 do
    local n = minetest.get_node({x = x, y = y, z = z}).name
    if n ~= "air" and n ~= "ignore" and not n:find("leaves") and not n:find("tree")
       and not n:find("grass_") and not n:find("flowers") and not n:find("snow") then
      return y, n
    end
  end
  return nil, nil
end

local function write(name, text)
  local f = io.open(wp .. "/" .. name, "w"); f:write(text); f:close()
end

local function read(name)
  local f = io.open(wp .. "/" .. name, "r"); if not f then return nil end
  local t = f:read("*a"); f:close(); return t
end

local ROOMS = {{"default:wood", "house"}, {"default:cobble", "dungeon"},
               {"default:stonebrick", "castle_hall"}, {"default:stone", "cave"}}

local function build_room(p, mat)
  local r, h = rng:next(3, 6), rng:next(3, 5)
  for dx = -r, r do for dz = -r, r do for dy = -1, h do
    local edge = dx == -r or dx == r or dz == -r or dz == r or dy == -1 or dy == h
    minetest.set_node({x = p.x + dx, y = p.y + dy, z = p.z + dz}, {name = edge and mat or "air"})
  end end end
  for k = 1, rng:next(1, 4) do
    local dx, dz = rng:next(-r + 1, r - 1), rng:next(-r + 1, r - 1)
    if dx ~= 0 or dz ~= 0 then
      minetest.set_node({x = p.x + dx, y = p.y, z = p.z + dz}, {name = "default:torch", param2 = 1})
    end
  end
  if mat == "default:wood" and rng:next(0, 1) == 1 then
    minetest.set_node({x = p.x + 1, y = p.y, z = p.z + r - 1}, {name = "default:chest"})
  end
end

local state = {left = 0}

local function next_spot(player)
  for attempt = 1, 40 do
    local x, z = rng:next(-cfg.range, cfg.range), rng:next(-cfg.range, cfg.range)
    local pos = {x = x, y = 20, z = z}
    minetest.emerge_area({x = x - 24, y = -24, z = z - 24}, {x = x + 24, y = 90, z = z + 24})
    return pos
  end
end

local function capture(player, spot_label, extra)
  shot = shot + 1
  local hp = rng:next(1, 20)
  player:set_hp(hp)
  local label = {}
  for k, v in pairs(spot_label) do label[k] = v end
  label.player = hp >= 14 and "healthy" or (hp >= 7 and "hurt" or "badly_hurt")
  local rec = {id = shot, hp = hp, labels = label, meta = extra}
  minetest.after(cfg.settle, function()
    write("ready.json", minetest.write_json(rec))
    local function wait_ack()
      local a = read("ack")
      if a and tonumber(a) == shot then
        os.remove(wp .. "/ack")
        if player:get_hp() == hp then
          local f = io.open(wp .. "/labels.jsonl", "a")
          f:write(minetest.write_json(rec) .. "\n"); f:close()
        end
        state.step()
      else
        minetest.after(0.1, wait_ack)
      end
    end
    wait_ack()
  end)
end

local queue = {}

function state.step()
  local player = minetest.get_player_by_name("npcb")
  if not player then return end
  if #queue > 0 then
    local fn = table.remove(queue, 1); fn(player); return
  end
  if shot >= cfg.shots then write("done", "1"); return end
  -- new location
  local x, z = rng:next(-cfg.range, cfg.range), rng:next(-cfg.range, cfg.range)
  player:set_pos({x = x, y = 60, z = z})
  minetest.emerge_area({x = x - 32, y = -20, z = z - 32}, {x = x + 32, y = 90, z = z + 32}, function(_, _, left)
    if left > 0 then return end
    minetest.after(1.0, function()
      local y, node = surface(x, z)
      if not y then state.step(); return end
      local bd = minetest.get_biome_data({x = x, y = y, z = z})
      local biome = bd and minetest.get_biome_name(bd.biome) or "?"
      local place = place_of(biome)
      if node:find("water") then place = "sea" elseif place == "sea" then place = "beach" end
      if y > 45 then place = "mountain" end
      local base = {x = x, y = y + 1, z = z}
      if node:find("water") then
        minetest.set_node({x = x, y = y, z = z}, {name = "default:wood"})
      end
      local indoor = rng:next(1, 100) <= cfg.indoor_pct
      local times = {"day", "dusk", "night"}
      if indoor then
        local room = ROOMS[rng:next(1, #ROOMS)]
        build_room(base, room[1])
        for k = 1, cfg.per_spot do
          table.insert(queue, function(p)
            local tkind = times[rng:next(1, 3)]
            minetest.set_timeofday(time_for(tkind))
            p:set_pos(base); p:set_look_horizontal(rf(0, 6.28)); p:set_look_vertical(rf(-0.4, 0.3))
            capture(p, {setting = "indoor", place = room[2], danger = {}},
                    {biome = biome, time_set = tkind, material = room[1], x = x, y = y, z = z})
          end)
        end
      else
        for k = 1, cfg.per_spot do
          table.insert(queue, function(p)
            local tkind = times[rng:next(1, 3)]
            local tod = time_for(tkind)
            minetest.set_timeofday(tod)
            local yaw = rf(0, 6.28)
            p:set_pos(base); p:set_look_horizontal(yaw); p:set_look_vertical(rf(-0.35, 0.15))
            local danger = {}
            if rng:next(1, 100) <= cfg.fire_pct and place ~= "sea" then
              local dir = {x = -math.sin(yaw), z = math.cos(yaw)}
              for i = 0, 2 do
                local fp = {x = math.floor(x + dir.x * (4 + i) + 0.5), y = y + 1, z = math.floor(z + dir.z * (4 + i) + 0.5)}
                minetest.set_node(fp, {name = "fire:permanent_flame"})
              end
              danger = {"fire"}
            end
            capture(p, {setting = "outdoor", place = place, time = tkind, danger = danger},
                    {biome = biome, node = node, x = x, y = y, z = z, timeofday = tod})
          end)
        end
      end
      state.step()
    end)
  end)
end

minetest.register_on_joinplayer(function(player)
  player:set_armor_groups({fleshy = 100, fall_damage_add_percent = -100})
  player:hud_set_flags({minimap = false})
  minetest.after(3, state.step)
end)
"""


def _wait_file(path: Path, timeout: float, proc: subprocess.Popen) -> bool:
    end = time.time() + timeout
    while time.time() < end:
        if path.exists():
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.05)
    return False


def _stop(game: subprocess.Popen, xvfb: subprocess.Popen | None = None) -> None:
    game.terminate()
    try:
        game.wait(10)
    except subprocess.TimeoutExpired:
        game.kill()
    if xvfb is not None:
        xvfb.terminate()
        xvfb.wait(5)


def capture_minetest(out: Path, shots: int, seed: int, width: int, height: int, per_spot: int,
                     display: int, timeout: float) -> int:
    out.mkdir(parents=True, exist_ok=True)
    work = Path("build/vision/minetest_run") / f"seed{seed}"
    if work.exists():
        shutil.rmtree(work)
    world = work / "world"
    mod = world / "worldmods" / "npcb_capture"
    mod.mkdir(parents=True)
    (mod / "init.lua").write_text(MOD_LUA)
    (mod / "mod.conf").write_text("name = npcb_capture\ndepends = default, fire\n")
    (world / "world.mt").write_text("gameid = minetest_game\nbackend = sqlite3\n"
                                    "player_backend = sqlite3\nauth_backend = sqlite3\n")
    (world / "map_meta.txt").write_text(f"mg_name = v7\nseed = {seed}\n[end_of_params]\n")
    (world / "capture.json").write_text(json.dumps({
        "seed": seed, "shots": shots, "range": 2500, "per_spot": per_spot, "indoor_pct": 35,
        "fire_pct": 20, "settle": 1.6}))
    conf = work / "minetest.conf"
    conf.write_text("\n".join([
        f"screen_w = {width}", f"screen_h = {height}", "fullscreen = false", "enable_sound = false",
        "mute_sound = true", "enable_damage = true", "creative_mode = false", "time_speed = 0",
        "enable_shaders = false", "viewing_range = 80", "fps_max = 20", "pause_on_lost_focus = false",
        "enable_fire = true", "show_debug = false", "enable_minimap = false", "enable_clouds = true",
        "menu_last_game = minetest_game", "server_announce = false", "enable_mod_channels = false",
        "mg_name = v7", f"fixed_map_seed = {seed}", "node_highlighting = none", "tooltip_show_delay = 0",
        "chat_message_limit_per_10sec = 0", "hud_scaling = 1", "enable_particles = true",
        "secure.enable_security = true", "mainmenu_last_selected_world = 1", "",
    ]))
    env = dict(os.environ, DISPLAY=f":{display}", LIBGL_ALWAYS_SOFTWARE="1", HOME=str(work.resolve()))
    xvfb = subprocess.Popen(["Xvfb", f":{display}", "-screen", "0", f"{width}x{height}x24", "-nolisten", "tcp"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.5)
    game = subprocess.Popen(["/usr/games/minetest", "--go", "--world", str(world.resolve()),
                             "--config", str(conf.resolve()), "--name", "npcb",
                             "--password", ""],
                            env=env, stdout=open(work / "minetest.log", "w"), stderr=subprocess.STDOUT)
    got = 0
    ready = world / "ready.json"
    try:
        while got < shots:
            if not _wait_file(ready, timeout, game):
                if (world / "done").exists():
                    break
                print("minetest stopped answering; see", work / "minetest.log", file=sys.stderr)
                break
            time.sleep(0.05)
            try:
                rec = json.loads(ready.read_text())
            except (json.JSONDecodeError, OSError):
                time.sleep(0.1)
                continue
            ready.unlink()
            name = f"minetest_s{seed}_{int(rec['id']):04d}.png"
            img = ImageGrab.grab(xdisplay=f":{display}").convert("RGB").crop((0, 0, width, height))
            img.save(out / name)
            (world / "ack").write_text(str(int(rec["id"])))
            got += 1
            if got % 20 == 0:
                print(f"  minetest seed {seed}: {got}/{shots}", file=sys.stderr)
        time.sleep(0.5)
    finally:
        _stop(game, xvfb)
    kept = 0
    lines = (world / "labels.jsonl").read_text().splitlines() if (world / "labels.jsonl").exists() else []
    with (out / "labels.jsonl").open("a") as fh:
        for line in lines:
            rec = json.loads(line)
            name = f"minetest_s{seed}_{int(rec['id']):04d}.png"
            if not (out / name).exists():
                continue
            labels = rec["labels"]
            labels.setdefault("time", None)
            labels.update(creatures=None, danger=danger_label("minetest", labels, {}),
                          weather=weather_label("minetest", labels, {}))
            fh.write(json.dumps({"file": name, "game": "minetest", "labels": labels,
                                 "meta": dict(rec.get("meta") or {}, hp=rec["hp"], seed=seed)}) + "\n")
            kept += 1
    # drop images whose label was rejected (HP changed between set-up and grab)
    listed = {json.loads(l)["file"] for l in (out / "labels.jsonl").read_text().splitlines()}
    for png in out.glob(f"minetest_s{seed}_*.png"):
        if png.name not in listed:
            png.unlink()
    return kept


FLARE_MAPS = Path("/usr/share/games/flare/mods/empyrean_campaign/maps")
# tileset -> (setting, place, time): Flare has no day/night cycle; its outdoor maps are daylit.
FLARE_TILESETS = {
    "dungeon": ("indoor", "dungeon", None), "cave": ("indoor", "cave", None),
    "cave_and_dungeon": ("indoor", None, None), "grassland": ("outdoor", None, "day"),
    "snowplains": ("outdoor", "snow", "day"),
}
FLARE_AVATAR = """name=Delrek
permadeath=0
option=male,head_short,images/portraits/male01.png
class=Adventurer
xp=0
build=2,2,2,2
currency=0
spawn=maps/{map},{x},{y}
"""


#: Flare's weather overlays (maps/parallax/*.txt) -> the weather tag
FLARE_WEATHER = {"rain": "rain", "snow": "snow", "fog": "fog"}


def flare_weather(map_text: str, map_name: str = "map") -> str:
    """A Flare map's weather from its ``parallax_layers`` line ("clear" without an overlay). Raises
    when the map's overlay is one this vocabulary has no word for (space), so no frame is mislabelled."""
    for line in map_text.splitlines():
        if line.startswith("parallax_layers="):
            kind = Path(line.split("=", 1)[1].strip()).stem
            if kind not in FLARE_WEATHER:
                raise ValueError(f"{map_name}: parallax layer {kind!r} has no weather label")
            return FLARE_WEATHER[kind]
    return "clear"


def weather_label(game: str, labels: dict[str, Any], meta: dict[str, Any]) -> str | None:
    """The weather of a captured frame, from what the game draws: only outdoor frames carry one
    (the vocabulary's weather is the sky's); Minetest's default game and Wesnoth's multiplayer maps
    draw none, Flare's maps name theirs."""
    if labels.get("setting") != "outdoor":
        return None
    if game == "flare":
        return flare_weather((FLARE_MAPS / meta["map"]).read_text(errors="replace"), meta["map"])
    return "clear"


def danger_label(game: str, labels: dict[str, Any], meta: dict[str, Any]) -> list[str] | None:
    """Danger where the set-up settles it: Minetest's script sets its fires itself; a Wesnoth view with
    no unit placed near its centre shows no fight and no fire (the maps draw none); Flare's views may
    hold monsters, so Flare's is unknown."""
    if game == "minetest":  # an empty Lua table arrives as null or {}
        return labels.get("danger") if isinstance(labels.get("danger"), list) else []
    if game == "wesnoth":
        return [] if not meta.get("units") else None
    return None


def relabel_frames(out: Path, game: str) -> dict[str, dict[str, int]]:
    """Rewrite the weather and danger of every frame in ``out/labels.jsonl`` by `weather_label` and
    `danger_label` (from each frame's ``meta``); counts per value."""
    path = out / "labels.jsonl"
    recs = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    counts: dict[str, dict[str, int]] = {"weather": {}, "danger": {}}
    for rec in recs:
        lab, meta = rec["labels"], rec.get("meta") or {}
        lab["weather"], lab["danger"] = weather_label(game, lab, meta), danger_label(game, lab, meta)
        for tag in counts:
            key = str(lab[tag])
            counts[tag][key] = counts[tag].get(key, 0) + 1
    path.write_text("".join(json.dumps(r) + "\n" for r in recs))
    return counts


def flare_maps() -> list[tuple[str, str, int, int]]:
    out = []
    for path in sorted(FLARE_MAPS.glob("*.txt")):
        text = path.read_text(errors="replace")
        tileset = hero = None
        for line in text.splitlines():
            if line.startswith("tileset=tilesetdefs/tileset_") and tileset is None:
                tileset = line.split("tileset_", 1)[1].rsplit(".", 1)[0]
            if line.startswith("hero_pos=") and hero is None:
                hero = tuple(int(v) for v in line.split("=", 1)[1].split(",")[:2])
        if tileset in FLARE_TILESETS and hero is not None:
            out.append((path.name, tileset, hero[0], hero[1]))
    return out


def capture_flare(out: Path, views: int, seed: int, width: int, height: int, display: int) -> int:
    """One game launch per map (spawned at the map's entry point by a written save file); the hero
    is walked around with xdotool clicks and the screen grabbed after each walk. Labels come from
    the map's tileset: dungeon / cave maps are indoor, grassland / snowplains maps outdoor by day."""
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    home = (Path("build/vision/flare_run") / f"seed{seed}").resolve()
    save = home / ".local/share/flare/saves/empyrean/1"
    conf = home / ".config/flare"
    kept = 0
    xvfb = subprocess.Popen(["Xvfb", f":{display}", "-screen", "0", f"{width}x{height}x24", "-nolisten", "tcp"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.5)
    env = dict(os.environ, DISPLAY=f":{display}", HOME=str(home), LP_NUM_THREADS="1",
               XDG_DATA_HOME=str(home / ".local/share"), XDG_CONFIG_HOME=str(home / ".config"))
    try:
        with (out / "labels.jsonl").open("a") as fh:
            for name, tileset, hx, hy in flare_maps():
                if save.exists():
                    shutil.rmtree(save)
                save.mkdir(parents=True)
                conf.mkdir(parents=True, exist_ok=True)
                (conf / "settings.txt").write_text(
                    f"resolution_w={width}\nresolution_h={height}\nfullscreen=0\nmusic_volume=0\nsound_volume=0\n")
                (save / "avatar.txt").write_text(FLARE_AVATAR.format(map=name, x=hx, y=hy))
                game = subprocess.Popen(["/usr/games/flare", "--no-audio", "--load-slot=1"], env=env,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                time.sleep(7)
                setting, place, tod = FLARE_TILESETS[tileset]
                for v in range(views):
                    if v:
                        x, y = rng.randint(width // 5, 4 * width // 5), rng.randint(height // 5, 3 * height // 4)
                        subprocess.run(["xdotool", "mousemove", str(x), str(y), "click", "1"], env=env,
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                        time.sleep(2.5)
                    if game.poll() is not None:
                        break
                    img = ImageGrab.grab(xdisplay=f":{display}").convert("RGB").crop((0, 0, width, height))
                    if max(img.getextrema()[c][1] for c in range(3)) < 10:
                        continue  # still loading: a black frame
                    file = f"flare_s{seed}_{name[:-4]}_{v}.png"
                    img.save(out / file)
                    labels = {"place": place, "setting": setting, "time": tod, "weather": None,
                              "danger": None, "creatures": None, "player": None}
                    labels["weather"] = weather_label("flare", labels, {"map": name})
                    fh.write(json.dumps({"file": file, "game": "flare", "labels": labels,
                                         "meta": {"map": name, "tileset": tileset, "view": v}}) + "\n")
                    kept += 1
                game.terminate()
                try:
                    game.wait(5)
                except subprocess.TimeoutExpired:
                    game.kill()
                print(f"  flare {name}: {kept} kept so far", file=sys.stderr)
    finally:
        xvfb.terminate()
        xvfb.wait(5)
    return kept


WESNOTH_DATA = Path("/usr/share/games/wesnoth/1.16/data")
# Wesnoth's own time-of-day tints (data/core/macros/schedules.cfg); dawn is left out (neither day nor
# dusk in our vocabulary), the two night watches are both "night".
WESNOTH_TOD = {
    "day": [{"id": "morning", "red": 0, "green": 0, "blue": 0, "lawful_bonus": 25},
            {"id": "afternoon", "red": 0, "green": 0, "blue": 0, "lawful_bonus": 25}],
    "dusk": [{"id": "dusk", "red": 10, "green": -20, "blue": -35, "lawful_bonus": 0}],
    "night": [{"id": "first_watch", "red": -75, "green": -45, "blue": -13, "lawful_bonus": -25},
              {"id": "second_watch", "red": -75, "green": -45, "blue": -13, "lawful_bonus": -25}],
    "underground": [{"id": "underground", "red": -60, "green": -45, "blue": -25, "lawful_bonus": -25}],
}
# unit types placed near the view centre -> the creatures tag
WESNOTH_UNITS = {
    "wolves": ["Wolf", "Great Wolf", "Goblin Knight", "Wolf Rider"],
    "undead": ["Skeleton", "Skeleton Archer", "Ghoul", "Ghost", "Walking Corpse", "Revenant"],
    "dragon": ["Fire Dragon", "Sky Drake", "Drake Fighter"],
    "soldiers": ["Spearman", "Swordsman", "Bowman", "Heavy Infantryman", "Cavalryman", "Orcish Grunt"],
}


def _terrain_class(code: str) -> str:
    """Wesnoth terrain code -> cave / interior / forest / water / desert / snow / mountain / field / village."""
    code = code.strip().split(" ")[-1]  # "1 Kh" (a starting position) -> "Kh"
    base, _, overlay = code.partition("^")
    if base[:1] in ("U", "Q") or base in ("Xu", "Xuc", "Xue", "Xuce", "Tb") or base.startswith(("Cu", "Ku")):
        return "cave"
    if base[:1] == "I" or base.startswith("Xo"):
        return "interior"
    if base[:1] == "X":
        return "cave"
    if overlay.startswith("F"):
        return "forest"
    if overlay.startswith("V"):
        return "village"
    if base[:1] == "W" or base.startswith("Ss"):
        return "water"
    if base[:1] == "D" or base == "Hd":
        return "desert"
    if base[:1] == "A" or base in ("Ha", "Ms"):
        return "snow"
    if base[:1] == "M" or base[:1] == "H":
        return "mountain"
    return "field"


def wesnoth_maps() -> list[tuple[str, str, list[list[str]]]]:
    out = []
    paths = sorted((WESNOTH_DATA / "multiplayer" / "maps").glob("*.map"))
    for path in paths:
        text = path.read_text(errors="replace").strip()
        rows = [[c.strip() for c in line.split(",")] for line in text.splitlines() if "," in line]
        if len(rows) > 8 and all(len(r) == len(rows[0]) for r in rows):
            out.append((path.stem, text, rows))
    return out


def _wesnoth_view(rows: list[list[str]], cx: int, cy: int, half_w: int = 5, half_h: int = 4) -> dict[str, float]:
    """Share of each terrain class among the hexes around (cx, cy) (map coordinates, border = 0)."""
    counts: dict[str, int] = {}
    n = 0
    for y in range(cy - half_h, cy + half_h + 1):
        for x in range(cx - half_w, cx + half_w + 1):
            if 0 <= y < len(rows) and 0 <= x < len(rows[0]):
                k = _terrain_class(rows[y][x])
                counts[k] = counts.get(k, 0) + 1
                n += 1
    return {k: v / n for k, v in counts.items()}


def _lua_table(value: Any) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {_lua_table(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "{" + ", ".join(_lua_table(v) for v in value) + "}"
    if isinstance(value, str):
        return json.dumps(value)
    return str(value)


WESNOTH_LUA = r"""
local T = wml.tag
for _, s in ipairs(PLAN) do
  wml.fire("replace_map", {map_data = MAPS[s.map], expand = true, shrink = true})
  wesnoth.schedule.replace({current_time = 0, T.time(s.tod)})
  for _, u in ipairs(wesnoth.units.find_on_map({})) do u:erase() end
  for _, u in ipairs(s.units) do
    wesnoth.units.to_map({type = u.type, side = u.side, facing = u.facing}, u.x, u.y)
  end
  wesnoth.interface.scroll_to_hex(s.x, s.y, false, true)
  wesnoth.interface.delay(700)
  std_print("NPCB READY " .. s.id)
  wesnoth.interface.delay(1300)
  std_print("NPCB DONE " .. s.id)
end
std_print("NPCB FINISHED")
"""


def wesnoth_plan(shots: int, seed: int) -> tuple[list[dict[str, Any]], list[str], list[dict[str, Any]]]:
    """Spots on the multiplayer maps with the labels they imply. A view is indoor when >= 70% of the
    hexes around it are cave / interior terrain (lit by Wesnoth's underground schedule, time left
    unlabelled) and outdoor when <= 5% are (lit by a day, dusk or night schedule); mixed views are skipped.
    Place is labelled only where one terrain class covers >= 50% of the view."""
    rng = random.Random(seed)
    maps = wesnoth_maps()
    plan, labels, map_texts, used = [], [], [], {}
    indoor_spots, outdoor_spots = [], []
    for mi, (name, _text, rows) in enumerate(maps):
        if len(rows) < 12 or len(rows[0]) < 14:
            continue
        for _ in range(40):
            # the view (about 11 x 9 hexes at 800x600) cannot scroll past the map's edge: keep the
            # centre far enough inside that the hexes counted are the hexes shown
            cy, cx = rng.randint(5, len(rows) - 6), rng.randint(6, len(rows[0]) - 7)
            share = _wesnoth_view(rows, cx, cy)
            inside = share.get("cave", 0) + share.get("interior", 0)
            if inside >= 0.7:
                indoor_spots.append((mi, cx, cy, share))
            elif inside <= 0.05:
                outdoor_spots.append((mi, cx, cy, share))
    rng.shuffle(indoor_spots)
    rng.shuffle(outdoor_spots)
    n_in = min(len(indoor_spots), shots * 3 // 10)
    spots = indoor_spots[:n_in] + outdoor_spots[:shots - n_in]
    rng.shuffle(spots)
    outdoor_place = {"forest": "forest", "water": "sea", "desert": "desert", "snow": "snow",
                     "mountain": "mountain", "field": "field", "village": "town"}
    for k, (mi, cx, cy, share) in enumerate(spots):
        name, text, rows = maps[mi]
        if mi not in used:
            used[mi] = len(map_texts) + 1
            map_texts.append(text)
        top, top_share = max(share.items(), key=lambda kv: kv[1])
        inside = share.get("cave", 0) + share.get("interior", 0) >= 0.7
        if inside:
            tkind, setting = "underground", "indoor"
            place = ("cave" if share.get("cave", 0) >= share.get("interior", 0) else "dungeon")
        else:
            tkind, setting = rng.choice(["day", "dusk", "night"]), "outdoor"
            place = outdoor_place.get(top) if top_share >= 0.5 else None
        tod = dict(rng.choice(WESNOTH_TOD[tkind]))
        units, creatures = [], set()
        for _ in range(rng.choice([0, 0, 1, 2, 3])):
            kind = rng.choice(sorted(WESNOTH_UNITS))
            ux, uy = cx + rng.randint(-2, 2), cy + rng.randint(-1, 1)
            if any((u["x"], u["y"]) == (ux, uy) for u in units):
                continue
            code = rows[uy][ux].split(" ")[-1]
            if code.startswith(("X", "Q", "Mm^X", "W")) or "^X" in code:
                continue
            units.append({"type": rng.choice(WESNOTH_UNITS[kind]), "side": rng.randint(1, 2), "x": ux,
                          "y": uy, "facing": rng.choice(["sw", "se", "s", "n"])})
            creatures.add(kind)
        plan.append({"id": k + 1, "map": used[mi], "x": cx, "y": cy, "tod": tod, "units": units})
        labels.append({"place": place, "setting": setting,
                       "time": None if tkind == "underground" else tkind,
                       "weather": weather_label("wesnoth", {"setting": setting}, {}),
                       "danger": danger_label("wesnoth", {}, {"units": units}),
                       "creatures": sorted(creatures), "player": None,
                       "_meta": {"map": name, "x": cx, "y": cy, "tod": tod["id"],
                                 "share": {k2: round(v, 2) for k2, v in share.items()}}})
    return plan, map_texts, labels


def capture_wesnoth(out: Path, shots: int, seed: int, width: int, height: int, display: int,
                    timeout: float) -> int:
    """One game launch of a generated one-scenario campaign add-on whose start event walks a plan:
    for each shot it loads a multiplayer map ([replace_map]), sets a one-slot time-of-day schedule
    (Wesnoth's own day / dusk / night / underground tints), places a few units near the view centre
    (-> creatures), scrolls there and prints ``NPCB READY k``; this script grabs the display and keeps
    the frame only if ``NPCB DONE k`` (printed 1.3 s later, before the next set-up) had not yet
    appeared when the grab finished."""
    import queue
    import threading

    out.mkdir(parents=True, exist_ok=True)
    work = (Path("build/vision/wesnoth_run") / f"seed{seed}").resolve()
    if work.exists():
        shutil.rmtree(work)
    addon = work / "userdata" / "data" / "add-ons" / "npcb_capture"
    addon.mkdir(parents=True)
    plan, map_texts, labels = wesnoth_plan(shots, seed)
    lua = ("PLAN = " + _lua_table(plan) + "\nMAPS = {" +
           ",\n".join(f"[==[\n{t}\n]==]" for t in map_texts) + "}\n" + WESNOTH_LUA)
    (addon / "capture.lua").write_text(lua)
    first = map_texts[0]
    (addon / "_main.cfg").write_text(f"""[campaign]
    id=npcb_capture
    name="npcb capture"
    abbrev=npcb
    define=CAMPAIGN_NPCB_CAPTURE
    first_scenario=npcb_capture
    [difficulty]
        define=NORMAL
        label="normal"
        default=yes
    [/difficulty]
[/campaign]
#ifdef CAMPAIGN_NPCB_CAPTURE
[scenario]
    id=npcb_capture
    name="npcb capture"
    map_data="{first}"
    turns=unlimited
    [time]
        id=morning
        lawful_bonus=25
    [/time]
    [side]
        side=1
        controller=human
        no_leader=yes
        fog=no
        shroud=no
        team_name=a
    [/side]
    [side]
        side=2
        controller=human
        no_leader=yes
        fog=no
        shroud=no
        team_name=b
    [/side]
    [event]
        name=start
        [lua]
            code=<<wesnoth.dofile("~add-ons/npcb_capture/capture.lua")>>
        [/lua]
    [/event]
[/scenario]
#endif
""")
    prefs = work / "userdata" / "preferences"
    prefs.write_text(f'fullscreen=no\nxresolution={width}\nyresolution={height}\nsound=no\nmusic=no\n'
                     'show_tips=no\nidle_anim=no\nanimate_map=no\nminimap=no\n')
    env = dict(os.environ, DISPLAY=f":{display}", HOME=str(work), SDL_AUDIODRIVER="dummy")
    xvfb = subprocess.Popen(["Xvfb", f":{display}", "-screen", "0", f"{width}x{height}x24", "-nolisten", "tcp"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.5)
    game = subprocess.Popen(["/usr/games/wesnoth", "--userdata-dir", str(work / "userdata"), "--nosound",
                             "--windowed", "--resolution", f"{width}x{height}", "--campaign", "npcb_capture",
                             "--campaign-difficulty", "1", "--campaign-skip-story"],
                            env=env, stdout=subprocess.PIPE, stderr=open(work / "wesnoth.log", "w"),
                            text=True, bufsize=1)
    lines: "queue.Queue[str]" = queue.Queue()
    threading.Thread(target=lambda: [lines.put(l.strip()) for l in game.stdout], daemon=True).start()
    done: set[int] = set()
    kept = 0
    try:
        with (out / "labels.jsonl").open("a") as fh:
            while True:
                try:
                    line = lines.get(timeout=timeout)
                except queue.Empty:
                    print("wesnoth stopped answering; see", work / "wesnoth.log", file=sys.stderr)
                    break
                if line.startswith("NPCB DONE"):
                    done.add(int(line.split()[-1]))
                    continue
                if line.startswith("NPCB FINISHED"):
                    break
                if not line.startswith("NPCB READY"):
                    continue
                k = int(line.split()[-1])
                img = ImageGrab.grab(xdisplay=f":{display}").convert("RGB").crop((0, 0, width, height))
                while not lines.empty():  # did the game move on while we grabbed?
                    l2 = lines.get_nowait()
                    if l2.startswith("NPCB DONE"):
                        done.add(int(l2.split()[-1]))
                if k in done:
                    print(f"  wesnoth shot {k}: grabbed too late, dropped", file=sys.stderr)
                    continue
                lab = dict(labels[k - 1])
                meta = lab.pop("_meta")
                file = f"wesnoth_s{seed}_{k:04d}.png"
                img.save(out / file)
                fh.write(json.dumps({"file": file, "game": "wesnoth", "labels": lab,
                                     "meta": dict(meta, seed=seed, units=plan[k - 1]["units"])}) + "\n")
                kept += 1
                if kept % 20 == 0:
                    print(f"  wesnoth seed {seed}: {kept}/{len(plan)}", file=sys.stderr)
    finally:
        _stop(game, xvfb)
    return kept


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("game", choices=["minetest", "flare", "wesnoth", "relabel"])
    ap.add_argument("--game", dest="relabel_game", choices=["minetest", "flare", "wesnoth"],
                    help="with relabel: the captured game whose weather labels to rewrite")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--shots", type=int, default=150)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--size", default="800x600")
    ap.add_argument("--per-spot", type=int, default=5)
    ap.add_argument("--display", type=int, default=97)
    ap.add_argument("--timeout", type=float, default=90.0)
    args = ap.parse_args(argv)
    w, h = (int(v) for v in args.size.split("x"))
    if args.game == "relabel":
        if not args.relabel_game:
            ap.error("relabel needs --game GAME")
        out = args.out or Path("build/vision/real") / args.relabel_game
        print(json.dumps({"game": args.relabel_game, **relabel_frames(out, args.relabel_game)}))
        return 0
    out = args.out or Path("build/vision/real") / args.game
    random.seed(args.seed)
    if args.game == "wesnoth":
        kept = capture_wesnoth(out, args.shots, args.seed, w, h, args.display, args.timeout)
    elif args.game == "flare":
        kept = capture_flare(out, args.per_spot, args.seed, w, h, args.display)
    else:
        kept = capture_minetest(out, args.shots, args.seed, w, h, args.per_spot, args.display,
                                args.timeout)
    print(json.dumps({"game": args.game, "seed": args.seed, "kept": kept, "out": str(out)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
