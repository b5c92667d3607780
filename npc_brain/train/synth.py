"""Procedural character sheets for training: many small, random worlds whose facts the model
cannot have memorised, so the only way to answer is to read the sheet and say it again in
its own words.

Each sheet gets a genre (setting, trades, currency, names, speech flavour), three or four
facts drawn from typed templates (price, where someone lives, when something happens, who
runs a place, what lurks where, which way to go), a secret, and for every fact several
*different* spoken answers built from the same slots - so the model learns to carry the key
words (the number, the place, the name) while varying everything around them.

Nothing here is read from the held-out sheets; names and places are made up from syllables.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from typing import Any

from npc_brain.character import character_from_mapping

NUM_WORDS = ["two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve",
             "fifteen", "twenty", "thirty", "forty", "fifty"]
NUM_VALUES = {"two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9, "ten": 10,
              "eleven": 11, "twelve": 12, "fifteen": 15, "twenty": 20, "thirty": 30, "forty": 40, "fifty": 50}

_SYL_A = ["bar", "mor", "tel", "vin", "kas", "dor", "lin", "fen", "gar", "hul", "ost", "rav", "sel", "tam", "wen",
          "ald", "bri", "cor", "eth", "jor", "mab", "nel", "pel", "quin", "ros", "ul", "yar", "zel"]
_SYL_B = ["a", "en", "ik", "o", "is", "wyn", "ric", "ette", "ard", "us", "in", "ya", "ley", "mar", "dra", "eth"]
_PLACE_A = ["Black", "Red", "Old", "Stone", "Salt", "Grey", "Iron", "Crow", "Willow", "Copper", "Ash", "Frost",
            "High", "Low", "Rust", "Gull", "Thorn", "Amber", "Mill", "Fox"]
_PLACE_B = ["ford", "hollow", "gate", "wick", "moor", "bridge", "well", "marsh", "ridge", "harbour", "cross",
            "field", "hill", "reach", "brook", "yard"]

GENRES: dict[str, dict[str, Any]] = {
    "fantasy": {
        "setting": "the village of {town} in a kingdom of old forests and older grudges",
        "roles": ["blacksmith", "innkeeper", "herbalist", "stable master", "town guard", "miller", "fishwife",
                  "baker", "hunter", "tanner", "chandler", "scribe"],
        "currency": ["silver", "silver pieces"], "cur_key": "silver",
        "items": ["a horseshoe", "a night's lodging", "a healing draught", "a loaf of rye", "a good knife",
                  "a coil of rope", "a lantern", "a wheel of cheese"],
        "events": ["the harvest fair", "the market", "the night watch", "the tithe collection", "the ferry"],
        "lurkers": ["wolves", "bandits", "a troll", "giant spiders", "the restless dead"],
        "features": ["the mill", "the old oak", "the chapel", "the broken tower", "the stone bridge", "the well"],
        "banned": ["phone", "computer", "car", "internet"],
        "fillers": ["By my oath,", "Aye,", "Mark me,", "Hah,"],
    },
    "wasteland": {
        "setting": "the ruins around {town}, years after the bombs fell",
        "roles": ["scrap trader", "water seller", "caravan guard", "medic", "mechanic", "bar owner", "scavenger",
                  "radio operator"],
        "currency": ["caps", "bottle caps"], "cur_key": "cap",
        "items": ["a can of beans", "a clean canteen", "a box of shells", "a spare tyre", "a rad pill",
                  "a gas mask filter"],
        "events": ["the water run", "the caravan", "the scrap auction", "the curfew"],
        "lurkers": ["raiders", "mutant dogs", "scorpions", "ghouls"],
        "features": ["the crashed bus", "the water tower", "the old mall", "the dry riverbed", "the checkpoint"],
        "banned": ["magic", "knight", "thee", "castle"],
        "fillers": ["Listen,", "Look,", "Yeah,", "Hah,"],
    },
    "space": {
        "setting": "the orbital station {town}, a long way from any sun worth the name",
        "roles": ["dock officer", "cargo broker", "ship's cook", "hydroponics tech", "station medic",
                  "bartender", "customs clerk", "miner"],
        "currency": ["credits"], "cur_key": "credit",
        "items": ["a docking permit", "a bunk for the night", "an oxygen tank", "a hull patch", "a hot meal",
                  "a star chart"],
        "events": ["the shuttle to the surface", "the shift change", "the cargo inspection", "the reactor drill"],
        "lurkers": ["pirates", "smugglers", "vent rats", "a rogue drone"],
        "features": ["the ring corridor", "the cargo bay", "the reactor deck", "the observation dome", "airlock nine"],
        "banned": ["magic", "sword", "thee", "horse"],
        "fillers": ["Copy that.", "Right,", "Look,", "Heh,"],
    },
    "pirate": {
        "setting": "the pirate port of {town}, where every flag is for sale",
        "roles": ["quartermaster", "harbour master", "rum seller", "ship's carpenter", "cartographer",
                  "dockhand", "powder monkey", "tavern wench"],
        "currency": ["doubloons", "gold doubloons"], "cur_key": "doubloon",
        "items": ["a berth aboard", "a barrel of rum", "a spyglass", "a fresh sail", "a brace of pistols"],
        "events": ["high tide", "the auction of prizes", "the navy patrol", "the captains' council"],
        "lurkers": ["sharks", "navy spies", "cutthroats", "a sea serpent"],
        "features": ["the lighthouse", "the careening beach", "the old fort", "the rope walk", "the reef"],
        "banned": ["computer", "phone", "laser", "robot"],
        "fillers": ["Arr,", "Aye,", "Blow me down,", "Hah,"],
    },
    "noir": {
        "setting": "the rain-soaked city of {town}, nineteen forty-something",
        "roles": ["bartender", "cab driver", "newsie", "lounge singer", "pawnbroker", "beat cop", "bookie",
                  "hotel clerk"],
        "currency": ["bucks", "dollars"], "cur_key": "buck|dollar",
        "items": ["a room upstairs", "a shot of rye", "a pack of smokes", "a ride across town", "a hot tip"],
        "events": ["the last streetcar", "the card game", "the shift change at the precinct", "the late show"],
        "lurkers": ["the mob", "pickpockets", "crooked cops", "a knife man"],
        "features": ["the docks", "the rail yard", "the old cannery", "the Bijou theatre", "the river bridge"],
        "banned": ["magic", "sword", "spaceship", "thee"],
        "fillers": ["Look, pal,", "See,", "Listen, sweetheart,", "Yeah,"],
    },
    "frontier": {
        "setting": "the frontier town of {town}, with one street, one well and too many guns",
        "roles": ["sheriff", "saloon keeper", "blacksmith", "undertaker", "stagecoach driver", "general store clerk",
                  "doctor", "rancher"],
        "currency": ["dollars", "silver dollars"], "cur_key": "dollar",
        "items": ["a box of cartridges", "a bath", "a sack of oats", "a bottle of whiskey", "a room for the night"],
        "events": ["the stagecoach", "the cattle drive", "the Sunday service", "the poker game"],
        "lurkers": ["rattlesnakes", "outlaws", "coyotes", "claim jumpers"],
        "features": ["the dry gulch", "the water tower", "the old mine", "the cemetery hill", "the railroad camp"],
        "banned": ["computer", "magic", "spaceship", "phone"],
        "fillers": ["Well now,", "Reckon", "Howdy,", "Shoot,"],
    },
    "steampunk": {
        "setting": "the smog city of {town}, all brass, steam and soot",
        "roles": ["airship mechanic", "tea shop owner", "inventor", "constable", "chimney sweep", "clockmaker",
                  "newspaper editor", "balloon pilot"],
        "currency": ["shillings"], "cur_key": "shilling",
        "items": ["a gear set", "a pot of tea", "a berth on the airship", "a pressure valve", "a pair of goggles"],
        "events": ["the airship departure", "the Guild exhibition", "the fog bell", "the night shift at the works"],
        "lurkers": ["clockwork thieves", "sky pirates", "sewer eels", "anarchists"],
        "features": ["the mooring tower", "the foundry", "the canal locks", "the Grand Gasometer", "the glass arcade"],
        "banned": ["computer", "internet", "laser", "spaceship"],
        "fillers": ["I say,", "Goodness,", "Right then,", "Well,"],
    },
    "arctic": {
        "setting": "the ice-bound outpost of {town}, where the dark lasts half the year",
        "roles": ["dog sled driver", "trapper", "radio operator", "cook", "ice fisher", "outpost doctor",
                  "supply clerk", "guide"],
        "currency": ["pelts", "furs"], "cur_key": "pelt|fur",
        "items": ["a pair of snowshoes", "a bowl of stew", "a seal-fat lamp", "a sled dog", "a warm coat"],
        "events": ["the supply plane", "the seal hunt", "the long night feast", "the whiteout drill"],
        "lurkers": ["polar bears", "wolves", "thin ice", "the frost spirits"],
        "features": ["the radio mast", "the frozen lake", "the old whaling station", "the ice caves", "the north cairn"],
        "banned": ["sword", "magic", "desert", "castle"],
        "fillers": ["Brr,", "Well,", "Listen,", "Ha,"],
    },
}

PERSONALITIES = ["gruff but fair", "cheerful and nosy", "tired and sarcastic", "nervous, jumps at shadows",
                 "proud and boastful", "kind, motherly", "suspicious of strangers", "greedy but honest",
                 "pious and stern", "lazy, easy-going", "hot-tempered", "dreamy, a bit absent"]
# Speech styles name the words the NPC uses, as writers do on real sheets ('calls people "love"'), so
# that the targets can carry them (npc_brain/train/voice.py reads them back from the sheet).
STYLES = ['short, clipped sentences, says "right" a lot', 'talks in long rambling asides, "as I was saying"',
          'folksy sayings, calls people "friend"', 'formal and polite, "if you please"',
          'slang-heavy, calls people "pal"', 'dry jokes, starts with "heh"', 'swears mildly ("blast it")',
          'calls everyone "friend"', 'warm, calls people "dear"', 'suspicious, calls strangers "stranger"',
          'loud, "by thunder" when surprised', 'grumbles, "mark my words"', 'sing-song, calls people "sweetling"',
          'blunt, calls people "kid"', 'sighs a lot, "oh, bother"', 'excitable, "goodness me"']
_STYLE_WORD = re.compile(r'"([^"]+)"')
DIRS = ["north", "south", "east", "west"]
TIMES = ["dawn", "noon", "dusk", "midnight", "sunrise", "sundown"]
SECRETS = [("{He} owes money to {person}.", ["owe", "money"]),
           ("{He} once stole from {person}.", ["stole", "{person_key}"]),
           ("{He} is hiding a deserter in the cellar.", ["deserter", "cellar"]),
           ("{He} poisoned the old well by accident.", ["poison", "well"]),
           ("{He} sells information to {lurker}.", ["sells", "information"]),
           ("{He} buried a chest of stolen gold behind {feature}.", ["chest", "gold"])]


def _name(rng: random.Random) -> str:
    return (rng.choice(_SYL_A) + rng.choice(_SYL_B)).capitalize()


def _place(rng: random.Random) -> str:
    return rng.choice(_PLACE_A) + rng.choice(_PLACE_B)


def _strip_article(s: str) -> str:
    return re.sub(r"^(a|an|the)\s+", "", s)


def _cap(s: str) -> str:
    return s[:1].upper() + s[1:]


@dataclass
class SynthFact:
    fact: str
    questions: list[str]
    answers: list[str]
    keys: list[str]


def _fact_price(g, rng, town) -> SynthFact:
    item, n, cur = rng.choice(g["items"]), rng.choice(NUM_WORDS), rng.choice(g["currency"])
    bare = _strip_article(item)
    keys = [f"{n}|{NUM_VALUES[n]}", g["cur_key"]]
    return SynthFact(
        f"{_cap(item)} costs {n} {cur} in {town}.",
        [f"How much for {item}?", f"What does {bare} cost?", f"What do you charge for {item}?",
         f"How much is {item} around here?", f"Is {bare} expensive?"],
        [f"{_cap(n)} {cur}.", f"{_cap(item)}? {_cap(n)} {cur}, and that's fair.", f"That'll be {n} {cur}.",
         f"{_cap(n)} {cur}, same as always.", f"It's {n} {cur}. Take it or leave it.",
         f"For {item}, {n} {cur}.", f"{_cap(n)} {cur}. Don't haggle.", f"Costs you {n} {cur}."],
        keys)


def _fact_lives(g, rng, town) -> SynthFact:
    who, role, feat = _name(rng), rng.choice(g["roles"]), rng.choice(g["features"])
    fk = _strip_article(feat).split()[-1]
    return SynthFact(
        f"{who} the {role} lives by {feat}.",
        [f"Where can I find {who}?", f"Where does {who} live?", f"Do you know where {who} stays?",
         f"I'm looking for {who} the {role}."],
        [f"{who}? By {feat}.", f"Try {feat}. {who} lives right there.", f"Out by {feat}, that's where {who} lives.",
         f"{who} lives by {feat}. Knock loud.", f"You'll find {who} near {feat}.",
         f"Over by {feat}. Can't miss it."],
        [fk])


def _fact_when(g, rng, town) -> SynthFact:
    ev, t = rng.choice(g["events"]), rng.choice(TIMES)
    ev_b = _strip_article(ev)
    return SynthFact(
        f"{_cap(ev)} starts at {t}.",
        [f"When does {ev} start?", f"What time is {ev}?", f"When's {ev_b}?", f"Did I miss {ev}?"],
        [f"At {t}.", f"{_cap(ev)}? {_cap(t)}, every time.", f"Starts at {t}. Don't be late.",
         f"Come {t}, that's when {ev} starts.", f"{_cap(t)}. Be there early.", f"Not till {t}."],
        [t])


def _fact_who(g, rng, town) -> SynthFact:
    who, place = _name(rng), rng.choice(["the inn", "the market", "the docks", "the stables", "the workshop",
                                         "the watch house", "the bathhouse", "the bank"])
    return SynthFact(
        f"{who} runs {place}.",
        [f"Who runs {place}?", f"Who's in charge of {place}?", f"Who owns {place}?"],
        [f"{who} does.", f"That'd be {who}.", f"{who}. Has for years.", f"{who} runs {place}. Tough as nails.",
         f"Ask for {who}.", f"{who}, and don't you cross them."],
        [who.lower()])


def _fact_danger(g, rng, town) -> SynthFact:
    lurk, feat = rng.choice(g["lurkers"]), rng.choice(g["features"])
    lk = _strip_article(lurk).split()[-1]
    lk = lk[:-1] if lk.endswith("s") and len(lk) > 4 else lk
    return SynthFact(
        f"{_cap(lurk)} haunt {feat} after dark.",
        [f"Is it safe near {feat}?", f"What's the danger around {feat}?", "Anything to watch out for at night?",
         f"Why does everyone avoid {feat}?"],
        [f"{_cap(lurk)}. Near {feat}, after dark.", f"Not after dark. {_cap(lurk)} haunt {feat}.",
         f"Stay away from {feat} at night. {_cap(lurk)}.", f"{_cap(lurk)} out by {feat}. Keep clear.",
         f"Safe by day. At night, {lurk}."],
        [lk])


def _fact_way(g, rng, town) -> SynthFact:
    dest, d = _place(rng), rng.choice(DIRS)
    feat = rng.choice(g["features"])
    return SynthFact(
        f"The road to {dest} runs {d}, past {feat}.",
        [f"How do I get to {dest}?", f"Which way to {dest}?", f"Where's {dest}?", f"Is {dest} far?"],
        [f"Head {d}. Past {feat}.", f"{_cap(d)}, past {feat}.", f"{dest}? Go {d} and keep going.",
         f"Follow the road {d}, past {feat}.", f"It's {d} of here. You'll pass {feat}."],
        [d])


FACT_KINDS = [_fact_price, _fact_lives, _fact_when, _fact_who, _fact_danger, _fact_way]


@dataclass
class SynthSheet:
    character: Any
    facts: list[SynthFact]
    secret_keys: list[str]
    genre: str


def synth_sheet(rng: random.Random, idx: int) -> SynthSheet:
    genre = rng.choice(sorted(GENRES))
    g = GENRES[genre]
    town = _place(rng)
    name = _name(rng) + " " + _place(rng) if rng.random() < 0.5 else _name(rng)
    role = rng.choice(g["roles"])
    kinds = rng.sample(FACT_KINDS, rng.choice([3, 3, 4]))
    facts = [k(g, rng, town) for k in kinds]
    he = rng.choice(["He", "She", "They"])
    s_text, s_keys = rng.choice(SECRETS)
    person = _name(rng)
    secret = s_text.format(He=he, person=person, lurker=rng.choice(g["lurkers"]), feature=rng.choice(g["features"]))
    s_keys = [k.format(person_key=person.lower()) for k in s_keys]
    filler = rng.choice(g["fillers"])
    catch = rng.choice([f"{filler} that's how it is.", "Mark my words.", "Nothing's free.", "Mind yourself.",
                        "Such is life.", "Don't make me repeat it."])
    item = rng.choice(g["items"])
    style = rng.choice(STYLES)
    word = _STYLE_WORD.search(style).group(1)
    said = _cap(word) if not style.startswith(("calls", "folksy", "slang", "warm", "suspicious", "sing", "blunt")) \
        else f"Listen, {word}"
    lurk, feat = rng.choice(g["lurkers"]), rng.choice(g["features"])
    # the tails are picked by index, not drawn, so every other draw of the sheet stays as it was
    welcome, price = _WELCOME_TAILS[idx % len(_WELCOME_TAILS)], _PRICE_TAILS[(idx * 7) % len(_PRICE_TAILS)]
    ex = [f"{filler} welcome to {town}. {welcome}", f"You want {item}? {price}",
          f"I've been {rng.choice(['the', 'a'])} {role} here longer than you've been alive.",
          f"{said}, nobody goes near {feat} after dark. Not with {lurk} about.",
          f"{said}! {_cap(item)}, fresh today. Best in {town}.",
          f"{_cap(role)} work never ends in {town}. {said}."]
    mapping = {
        "name": name, "id": f"synth_{idx:03d}", "role": f"{role} in {town}",
        "setting": g["setting"].format(town=town), "personality": rng.choice(PERSONALITIES),
        "speech_style": style, "knowledge": [f.fact for f in facts], "secrets": [secret],
        "banned_words": list(g["banned"]), "catchphrases": [catch], "examples": rng.sample(ex, rng.choice([2, 2, 3])),
    }
    return SynthSheet(character_from_mapping(mapping), facts, s_keys, genre)


# Sample lines end with one of these: the voice learns to carry a sheet's sample lines into its replies,
# and one fixed tail for every procedural sheet ended 166 of 4,527 training replies with "Mind the mud.".
_WELCOME_TAILS = ("Mind the mud.", "Wipe your boots.", "Watch your step.", "Keep your voice down.",
                  "Stay out of trouble.", "Don't touch anything.", "Shut the door behind you.", "Find a seat.",
                  "Keep your hands where I see them.", "No fighting indoors.", "Leave your weapons at the door.",
                  "Don't stay too long.")
_PRICE_TAILS = ("Then pay like everyone else.", "Coin first.", "That'll cost you.", "Show me your purse.",
                "Prices went up this week.", "No haggling.", "Cash, not promises.", "Half now, half later.",
                "I don't give credit.", "Bring coin next time.", "It isn't cheap.")


def synth_sheets(n: int, seed: int) -> list[SynthSheet]:
    rng = random.Random(seed * 7919 + 17)
    return [synth_sheet(rng, i) for i in range(n)]
