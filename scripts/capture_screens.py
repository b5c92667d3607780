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
not from looking at the picture. Weather and creatures are not labelled (minetest_game has neither).
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
        game.terminate()
        try:
            game.wait(10)
        except subprocess.TimeoutExpired:
            game.kill()
        xvfb.terminate()
        xvfb.wait(5)
    kept = 0
    lines = (world / "labels.jsonl").read_text().splitlines() if (world / "labels.jsonl").exists() else []
    with (out / "labels.jsonl").open("a") as fh:
        for line in lines:
            rec = json.loads(line)
            name = f"minetest_s{seed}_{int(rec['id']):04d}.png"
            if not (out / name).exists():
                continue
            labels = rec["labels"]
            if not isinstance(labels.get("danger"), list):  # an empty Lua table arrives as null or {}
                labels["danger"] = []
            labels.update({"weather": None, "creatures": None})
            labels.setdefault("time", None)
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


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("game", choices=["minetest", "flare"])
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--shots", type=int, default=150)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--size", default="800x600")
    ap.add_argument("--per-spot", type=int, default=5)
    ap.add_argument("--display", type=int, default=97)
    ap.add_argument("--timeout", type=float, default=90.0)
    args = ap.parse_args(argv)
    w, h = (int(v) for v in args.size.split("x"))
    out = args.out or Path("build/vision/real") / args.game
    random.seed(args.seed)
    if args.game == "flare":
        kept = capture_flare(out, args.per_spot, args.seed, w, h, args.display)
    else:
        kept = capture_minetest(out, args.shots, args.seed, w, h, args.per_spot, args.display,
                                args.timeout)
    print(json.dumps({"game": args.game, "seed": args.seed, "kept": kept, "out": str(out)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
