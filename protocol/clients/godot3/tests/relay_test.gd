## End to end from a real Godot 3 engine: NpcBrainClient over RelayTransport to `npc-brain relay`
## (NPCB_RELAY host:port) and a real daemon behind it; says hello, asks the NPC in NPCB_SHEET (a JSON
## character sheet) one question and prints "LINE <text>" (exit 0), or the error (exit 1) within 90 s.
extends SceneTree

const Client = preload("res://npc_brain_client.gd")

var client
var done := false
var code := 1


func _init() -> void:
	var where := OS.get_environment("NPCB_RELAY").split(":")
	var f := File.new()
	f.open(OS.get_environment("NPCB_SHEET"), File.READ)
	var sheet: Dictionary = JSON.parse(f.get_as_text()).result
	f.close()
	var transport = Client.RelayTransport.new(where[0], int(where[1]))
	client = Client.new(transport)
	client.connect("welcome_received", self, "_on_welcome")
	client.connect("line_received", self, "_on_line")
	client.connect("error_received", self, "_on_error")
	var waited := 0
	while not transport.connected() and waited < 10000:
		OS.delay_msec(20)
		waited += 20
	client.hello()
	client.say({"npc": "brom", "character": sheet, "utterance": "What do you sell?", "seed": 3,
			"options": {"max_tokens": 16}})
	while not done and waited < 90000:
		client.poll()
		OS.delay_msec(20)
		waited += 20
	if not done:
		print("TIMEOUT")
	quit(code)


func _on_welcome(msg: Dictionary) -> void:
	print("WELCOME ", msg.get("bundle_id", ""))


func _on_line(reply: Dictionary) -> void:
	print("LINE ", reply["text"])
	code = 0
	done = true


func _on_error(id, error_code: String, message: String, _retry: int) -> void:
	print("ERROR ", id, " ", error_code, " ", message)
	done = true
