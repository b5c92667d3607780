## Conformance test of the Godot 3 GDScript codec against protocol/vectors (the twin of
## ../../godot/tests/vector_test.gd). Run headless with the vectors folder in NPCB_VECTORS:
##   NPCB_VECTORS=$PWD/protocol/vectors godot3-server --path protocol/clients/godot3 --script res://tests/vector_test.gd
## For every NAME.json: encode(json) must equal NAME.msgpack, and decode(NAME.msgpack) must equal
## the JSON; bad/*.msgpack must decode or fail cleanly. Prints "N passed, N failed".
extends SceneTree

const Client = preload("res://npc_brain_client.gd")

var passed := 0
var failed := 0


func _init() -> void:
	var dir := OS.get_environment("NPCB_VECTORS")
	if dir == "":
		dir = ProjectSettings.globalize_path("res://").plus_file("../../vectors")
	var names := []
	for file in list_files(dir):
		if file.ends_with(".json"):
			names.append(file.get_basename())
	names.sort()
	if names.size() < 10:  # a wrong folder: say so instead of failing inside the JSON reader
		print("no vectors in %s (set NPCB_VECTORS)" % dir)
		quit(1)
		return
	for name in names:
		var json = TypedJson.new(read_text(dir.plus_file(name + ".json"))).parse()
		var expected := read_bytes(dir.plus_file(name + ".msgpack"))
		check(name + " encode", Client.bytes_equal(Client.encode(json), expected))
		var result: Dictionary = Client.decode(expected)
		check(name + " decode", result["ok"] and deep_equal(result["value"], json))
	var full: Dictionary = TypedJson.new(read_text(dir.plus_file("say_full.json"))).parse()
	check("build_say == say_full", Client.bytes_equal(Client.encode(Client.build_say(full["id"], full)),
			read_bytes(dir.plus_file("say_full.msgpack"))))
	var bad := 0
	for file in list_files(dir.plus_file("bad")):
		if file.ends_with(".msgpack"):
			var r: Dictionary = Client.decode(read_bytes(dir.plus_file("bad").plus_file(file)))
			check("bad/" + file, r.has("ok"))
			bad += 1
	check("found the vectors", names.size() > 10 and bad > 5)
	print("%d passed, %d failed" % [passed, failed])
	quit(0 if failed == 0 else 1)


func check(what: String, ok: bool) -> void:
	if ok:
		passed += 1
	else:
		failed += 1
		print("FAIL ", what)


func list_files(path: String) -> Array:
	var out := []
	var d := Directory.new()
	if d.open(path) != OK:
		return out
	d.list_dir_begin(true, true)
	var f := d.get_next()
	while f != "":
		if not d.current_is_dir():
			out.append(f)
		f = d.get_next()
	d.list_dir_end()
	return out


func read_text(path: String) -> String:
	var f := File.new()
	f.open(path, File.READ)
	var text := f.get_as_text()
	f.close()
	return text


func read_bytes(path: String) -> PoolByteArray:
	var f := File.new()
	f.open(path, File.READ)
	var data := f.get_buffer(f.get_len())
	f.close()
	return data


func deep_equal(a, b) -> bool:
	if typeof(a) != typeof(b):
		return false
	match typeof(a):
		TYPE_DICTIONARY:
			if a.keys() != b.keys():
				return false
			for key in a:
				if not deep_equal(a[key], b[key]):
					return false
			return true
		TYPE_ARRAY:
			if a.size() != b.size():
				return false
			for i in a.size():
				if not deep_equal(a[i], b[i]):
					return false
			return true
		TYPE_RAW_ARRAY:
			return Client.bytes_equal(a, b)
	return a == b


## JSON that keeps ints and floats apart (Godot's JSON makes every number a float) and reads
## {"$bin": base64} as PoolByteArray.
class TypedJson:
	var s: String
	var i := 0

	func _init(text: String) -> void:
		s = text

	func parse():
		return value()

	func ws() -> void:
		while i < s.length() and s[i] in [" ", "\n", "\r", "\t"]:
			i += 1

	func value():
		ws()
		var c: String = s[i]
		if c == "{":
			return object()
		if c == "[":
			return array()
		if c == "\"":
			return string()
		if s.substr(i, 4) == "true":
			i += 4
			return true
		if s.substr(i, 5) == "false":
			i += 5
			return false
		if s.substr(i, 4) == "null":
			i += 4
			return null
		return number()

	func object():
		var m := {}
		i += 1
		ws()
		if s[i] == "}":
			i += 1
			return m
		while true:
			ws()
			var key := string()
			ws()
			i += 1  # ':'
			m[key] = value()
			ws()
			var c: String = s[i]
			i += 1
			if c == "}":
				break
		if m.size() == 1 and m.has("$bin"):
			return Marshalls.base64_to_raw(m["$bin"])
		return m

	func array() -> Array:
		var a := []
		i += 1
		ws()
		if s[i] == "]":
			i += 1
			return a
		while true:
			a.append(value())
			ws()
			var c: String = s[i]
			i += 1
			if c == "]":
				break
		return a

	func string() -> String:
		var out := ""
		i += 1
		while true:
			var c: String = s[i]
			i += 1
			if c == "\"":
				break
			if c != "\\":
				out += c
				continue
			var e: String = s[i]
			i += 1
			match e:
				"n":
					out += "\n"
				"t":
					out += "\t"
				"r":
					out += "\r"
				"b":
					out += char(8)
				"f":
					out += char(12)
				"u":
					out += char(s.substr(i, 4).hex_to_int())
					i += 4
				_:
					out += e
		return out

	## Godot 3's String.to_float() is not correctly rounded (0.4 comes out one bit off), so a float is
	## read as digits / 10^k: an exact integer divided by an exact power of ten rounds correctly.
	func number():
		var start := i
		while i < s.length() and s[i] in "+-0123456789.eE":
			i += 1
		var t := s.substr(start, i - start)
		if not ("." in t or "e" in t or "E" in t):
			return int(t)
		var exponent := 0
		var e_at := t.to_lower().find("e")
		if e_at >= 0:
			exponent = int(t.substr(e_at + 1))
			t = t.substr(0, e_at)
		var negative := t.begins_with("-")
		t = t.trim_prefix("-").trim_prefix("+")
		var dot := t.find(".")
		if dot >= 0:
			exponent -= t.length() - dot - 1
			t = t.replace(".", "")
		var magnitude := float(int(t))
		if exponent >= 0:
			magnitude *= pow(10.0, exponent)
		else:
			magnitude /= pow(10.0, -exponent)
		return -magnitude if negative else magnitude
