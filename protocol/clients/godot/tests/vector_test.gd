## Conformance test of the GDScript codec against protocol/vectors.
## Run headless, see project.godot.
## For every NAME.json: encode(json) must equal NAME.msgpack, and decode(NAME.msgpack) must equal
## the JSON; bad/*.msgpack must decode or fail cleanly. Prints "N passed, N failed".
extends SceneTree

const Client := preload("res://npc_brain_client.gd")

var passed := 0
var failed := 0


func _init() -> void:
	var args := OS.get_cmdline_user_args()
	var dir: String = args[0] if args.size() > 0 else "../../vectors"
	var names := []
	for file in DirAccess.get_files_at(dir):
		if file.ends_with(".json"):
			names.append(file.get_basename())
	names.sort()
	for name in names:
		var json = TypedJson.new(FileAccess.get_file_as_string(dir.path_join(name + ".json"))).parse()
		var expected := FileAccess.get_file_as_bytes(dir.path_join(name + ".msgpack"))
		check(name + " encode", Client.encode(json) == expected)
		var result := Client.decode(expected)
		check(name + " decode", result["ok"] and deep_equal(result["value"], json))
	var full_text := FileAccess.get_file_as_string(dir.path_join("say_full.json"))
	var full: Dictionary = TypedJson.new(full_text).parse()
	check("build_say == say_full", Client.encode(Client.build_say(full["id"], full))
			== FileAccess.get_file_as_bytes(dir.path_join("say_full.msgpack")))
	for file in DirAccess.get_files_at(dir.path_join("bad")):
		if file.ends_with(".msgpack"):
			var r := Client.decode(FileAccess.get_file_as_bytes(dir.path_join("bad").path_join(file)))
			check("bad/" + file, r.has("ok"))
	print("%d passed, %d failed" % [passed, failed])
	quit(0 if failed == 0 else 1)


func check(what: String, ok: bool) -> void:
	if ok:
		passed += 1
	else:
		failed += 1
		print("FAIL ", what)


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
	return a == b


## JSON that keeps ints and floats apart (Godot's JSON makes every number a float) and reads
## {"$bin": base64} as PackedByteArray.
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
		var c := s[i]
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
			var c := s[i]
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
			var c := s[i]
			i += 1
			if c == "]":
				break
		return a

	func string() -> String:
		var out := ""
		i += 1
		while true:
			var c := s[i]
			i += 1
			if c == "\"":
				break
			if c != "\\":
				out += c
				continue
			var e := s[i]
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

	func number():
		var start := i
		while i < s.length() and "+-0123456789.eE".contains(s[i]):
			i += 1
		var t := s.substr(start, i - start)
		if "." in t or "e" in t or "E" in t:
			return t.to_float()
		return t.to_int()
