"""A condition in plain words, French and English, for the citizen's eyes.

`condition(expression, procedure, language)` turns a compiled `when:` into « si le type de
passeport est « Passeport de service » » / "if the passport type is “Service passport”",
reading the expression's tree through engine.expressions' tree API (never its source). What
it cannot say (arithmetic, calls other than `age`, comparisons of two fields...) becomes a
generic text, GENERIC: a citizen never reads a raw expression.

What it says: comparisons of a field with a value (choices by their option's label, countries
by name, numbers, dates and `today`, `none`), `in`/`not in` lists, an option in a
multi-choice, `and`/`or`/`not` (negations pushed down to the comparisons), `age(date) < 18`,
`documents.x` (attached, or a count of files), boolean fields (`if X`), a field alone
("is given"), `fees_due`/`fees_paid` in XOF. Numbers and amounts are formatted per language
(`number`, `xof`), dates too (`date`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from engine import expressions as ex
from engine.expressions import Expression
from engine.model import LANGUAGES, Field, Procedure

from .countries import COUNTRY_NAMES

#: What a condition that cannot be said in words becomes.
GENERIC = {"fr": "dans certains cas (voir les conditions)", "en": "in some cases"}

_IF = {"fr": "si ", "en": "if "}
_MONTHS = {
    "fr": ("janvier", "février", "mars", "avril", "mai", "juin", "juillet", "août",
           "septembre", "octobre", "novembre", "décembre"),
    "en": ("January", "February", "March", "April", "May", "June", "July", "August",
           "September", "October", "November", "December"),
}
_INVERSE = {"eq": "ne", "ne": "eq", "lt": "gteq", "gteq": "lt", "gt": "lteq", "lteq": "gt",
            "in": "notin", "notin": "in"}
_MIRROR = {"eq": "eq", "ne": "ne", "lt": "gt", "gt": "lt", "lteq": "gteq", "gteq": "lteq"}
_ORDER = ("lt", "lteq", "gt", "gteq")


# --- formatting -------------------------------------------------------------------------------

def _check(language: str) -> str:
    if language not in LANGUAGES:
        raise ValueError(f"unknown language {language!r} (known: {', '.join(LANGUAGES)})")
    return language


#: French typography: a narrow no-break space between thousands, a no-break space before
#: the currency (neither a number nor an amount is ever cut at the end of a line).
THIN = "\u202f"
NBSP = "\u00a0"


def number(value: int | float, language: str = "fr") -> str:
    """A number the way the language writes it: « 25 000 », « 2,5 » (narrow no-break space
    between thousands); "25,000", "2.5"."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    text = f"{value:,}"
    if language == "fr":
        text = text.replace(",", THIN).replace(".", ",")
    return text


def xof(amount: int | float, language: str = "fr") -> str:
    """An amount in CFA francs: « 25 000 FCFA » in French, "XOF 25,000" in English (no-break
    spaces)."""
    if language == "fr":
        return f"{number(amount, 'fr')}{NBSP}FCFA"
    return f"XOF{NBSP}{number(amount, 'en')}"


def date(day: dt.date, language: str = "fr") -> str:
    """« 1er juin 2026 », "1 June 2026"."""
    first = "1er" if language == "fr" and day.day == 1 else str(day.day)
    return f"{first} {_MONTHS[language][day.month - 1]} {day.year}"


def quoted(text: str, language: str = "fr") -> str:
    """« text » in French, “text” in English."""
    return f"« {text} »" if language == "fr" else f"“{text}”"


def join(items: Sequence[str], word: str) -> str:
    """"a, b and c" (`word` is the last link: and, or, et, ou)."""
    if len(items) <= 1:
        return "".join(items)
    return f"{', '.join(items[:-1])} {word} {items[-1]}"


# --- the subject of a sentence: "le type de passeport", "the passport type" -----------------

_FEMININE_WORDS = frozenset({
    "date", "nature", "catégorie", "durée", "superficie", "surface", "adresse", "ville",
    "commune", "région", "préfecture", "profession", "langue", "raison", "personne",
    "demande", "forme", "taille", "valeur", "distance", "somme", "quantité", "zone", "classe",
    "filière", "option", "formule", "voie", "méthode", "modalité", "situation", "nationalité",
    "activité", "entreprise", "société", "association", "structure", "année", "période",
    "pièce", "copie", "case", "profondeur", "largeur", "longueur", "hauteur", "puissance",
    "consommation", "occupation", "destination", "religion", "ethnie", "fonction", "qualité",
    "source", "cause", "mention", "référence", "section", "branche", "parcelle", "propriété",
    "localité", "résidence", "commande", "circonscription",
})
_MASCULINE_WORDS = frozenset({
    "comité", "lycée", "musée", "été", "côté", "traité", "incendie", "génie", "mode", "type",
    "groupe", "nombre", "montant", "numéro", "nom", "sexe", "statut", "lieu", "pays", "titre",
    "motif", "revenu", "salaire", "âge", "domicile", "diplôme", "service", "centre", "siège",
    "secteur", "capital", "régime", "niveau", "volume", "code", "objet", "ministère",
})
_FEMININE_ENDINGS = ("tion", "sion", "xion", "té", "ure", "ance", "ence", "ie", "ude", "ette",
                     "esse", "ise", "ière", "ée", "ode", "ade", "elle", "ine", "ière", "ille")
_SINGULAR_S = frozenset({"pays", "poids", "prix", "mois", "cas", "corps", "temps", "choix",
                         "taux", "repas", "lieux", "statuts", "fils", "bois", "concours"})
_VOWELS = "aeiouyàâäéèêëîïôöûùüh"


@dataclass(frozen=True)
class _Subject:
    """What a sentence is about, as the language writes it at the start of a clause."""

    text: str
    feminine: bool = False
    plural: bool = False


def _lower_first(label: str) -> str:
    word = label.split(" ", 1)[0]
    if len(word) > 1 and (word.isupper() or not word[1:].islower() and word[1].isalpha()
                          and word[1].isupper()):
        return label  # an acronym (NIN, SGG)
    return label[:1].lower() + label[1:]


#: First words of labels that are not nouns (questions, "Vous êtes", "Retiré par").
_NOT_NOUNS = {
    "fr": frozenset({"vous", "votre", "vos", "je", "tu", "il", "elle", "nous", "ils", "elles",
                     "êtes", "est", "avez", "a", "quel", "quelle", "quels", "quelles", "qui",
                     "comment", "où", "quand", "combien", "pourquoi", "êtes-vous",
                     "avez-vous", "souhaitez-vous", "possédez-vous"}),
    "en": frozenset({"you", "your", "i", "we", "are", "is", "do", "does", "did", "have",
                     "has", "will", "can", "was", "were", "which", "what", "who", "how",
                     "when", "where", "why"}),
}


def _noun_like(label: str, language: str) -> bool:
    """Whether a label reads as a noun phrase ("Type de passeport"), not as a question or a
    participle ("Vous êtes", "Retiré par", "Collected by")."""
    words = label.strip().split()
    if not words or label.strip().endswith(("?", ":")):
        return False
    first = words[0].lower()
    if first in _NOT_NOUNS[language]:
        return False
    if language == "en":
        return not (first.endswith("ed") and first not in ("need", "seed", "speed", "feed"))
    return not (len(words) > 1 and first.endswith(("é", "és", "ée", "ées"))
                and not first.endswith(("té", "tés")) and first not in _FEMININE_WORDS)


def _subject(label: str, language: str) -> _Subject:
    """The label with its article: "le type de passeport", "the passport type"; a label
    that is not a noun phrase is quoted: "la réponse à « Vous êtes »"."""
    if not _noun_like(label, language):
        if language == "en":
            return _Subject(f"the answer to {quoted(label.strip(), 'en')}")
        return _Subject(f"la réponse à {quoted(label.strip(), 'fr')}", feminine=True)
    text = _lower_first(label.strip())
    if language == "en":
        first = text.split(" ", 1)[0].lower()
        plural = first.endswith("s") and not first.endswith(("ss", "us", "is", "news"))
        return _Subject(f"the {text}", plural=plural)
    word = text.split(" ", 1)[0].split("'", 1)[0].split("’", 1)[0].lower()
    plural = word.endswith(("s", "x")) and word not in _SINGULAR_S
    feminine = word in _FEMININE_WORDS or (
        word not in _MASCULINE_WORDS and word.endswith(_FEMININE_ENDINGS))
    if plural:
        return _Subject(f"les {text}", feminine, True)
    if word[:1] in _VOWELS:
        return _Subject(f"l'{text}", feminine)
    return _Subject(f"{'la' if feminine else 'le'} {text}", feminine)


# --- conditions -------------------------------------------------------------------------------

#: A phrase being built: a clause, or ("and" | "or", its parts).
_Phrase = str | tuple[str, list[Any]]


def condition(expression: Expression | None, procedure: Procedure,
              language: str = "fr") -> str | None:
    """`expression` in words ("si …" / "if …"), GENERIC when it cannot be said, None when
    there is no condition (`expression` is None)."""
    if expression is None:
        return None
    said = describe(expression, procedure, language)
    return GENERIC[language] if said is None else said


def describe(expression: Expression, procedure: Procedure, language: str = "fr") -> str | None:
    """`expression` in words ("si …" / "if …"), or None when it cannot be said."""
    words = _Words(procedure, _check(language))
    phrase = words.say(expression.tree, True)
    return None if phrase is None else _IF[language] + words.render(phrase, nested=False)


class _Words:
    def __init__(self, procedure: Procedure, language: str) -> None:
        self.procedure = procedure
        self.language = language
        self.fr = language == "fr"
        fields: dict[str, Field] = {}
        for transition in procedure.transitions:
            for given in transition.input:
                fields.setdefault(given.id, given)
        fields.update({f.id: f for f in procedure.fields})
        self.fields = fields

    # structure

    def say(self, node: ex.Node, positive: bool) -> _Phrase | None:
        inner = ex.negated(node)
        if inner is not None:
            return self.say(inner, not positive)
        logic = ex.logical(node)
        if logic is not None:
            operator = logic[0]
            parts: list[Any] = []
            for operand in self._operands(node, operator):
                said = self.say(operand, positive)
                if said is None:
                    return None
                parts.append(said)
            if not positive:  # not (a and b) is (not a) or (not b)
                operator = "or" if operator == "and" else "and"
            merged: list[Any] = []
            for part in parts:  # (a or b) or c: one list
                if isinstance(part, tuple) and part[0] == operator:
                    merged.extend(part[1])
                else:
                    merged.append(part)
            return operator, merged
        return self._clause(node, positive)

    def _operands(self, node: ex.Node, operator: str) -> list[ex.Node]:
        logic = ex.logical(node)
        if logic is None or logic[0] != operator:
            return [node]
        return self._operands(logic[1], operator) + self._operands(logic[2], operator)

    def render(self, phrase: _Phrase, nested: bool) -> str:
        if isinstance(phrase, str):
            return phrase
        operator, parts = phrase
        texts = [self.render(part, nested=True) for part in parts]
        word = {"and": "et", "or": "ou"}[operator] if self.fr else operator
        if not nested:
            return join(texts, word)
        if operator == "or":
            return ("soit " + ", soit ".join(texts)) if self.fr else "either " + join(texts, "or")
        if self.fr:
            return "à la fois " + join(texts, "et")
        return ("both " if len(texts) == 2 else "") + join(texts, "and")

    # clauses

    def _clause(self, node: ex.Node, positive: bool) -> str | None:
        found = ex.comparison(node)
        if found is not None:
            left, operator, right = found
            if not positive:
                operator = _INVERSE[operator]
            return self._comparison(left, operator, right)
        chain = ex.attribute_chain(node)
        if chain is not None and len(chain) == 2 and chain[0] == "documents":
            return self._attached(chain[1], positive)
        name = ex.name_of(node)
        if name is not None and name in self.fields:
            given = self.fields[name]
            if given.type == "boolean":
                return self._answer(given, positive)
            return self._given(given, positive)
        return None

    def _comparison(self, left: ex.Node, operator: str, right: ex.Node) -> str | None:
        if operator in ("in", "notin"):
            item = ex.name_of(right)
            if ex.is_scalar(left) and item in self.fields:  # 'x' in a multi-choice
                return self._includes(self.fields[item], ex.constant(left), operator == "in")
            return self._field(left, operator, right)
        if _is_value(left) and not _is_value(right):
            left, right, operator = right, left, _MIRROR[operator]
        if ex.call_name(left) == "age":
            return self._age(left, operator, right)
        chain = ex.attribute_chain(left)
        if chain is not None and len(chain) == 2 and chain[0] == "documents":
            return self._count(chain[1], operator, right)
        name = ex.name_of(left)
        if name == "today":
            return self._today(operator, right)
        if name in ("fees_due", "fees_paid") and name not in self.fields:
            return self._amount(name, operator, right)
        return self._field(left, operator, right)

    def _field(self, left: ex.Node, operator: str, right: ex.Node) -> str | None:
        name = ex.name_of(left)
        if name is None or name not in self.fields:
            return None
        given = self.fields[name]
        subject = _subject(given.label.get(self.language), self.language)
        if operator in ("in", "notin"):
            return self._among(given, subject, operator == "in", right)
        return self._field_value(given, subject, operator, right)

    def _among(self, given: Field, subject: _Subject, positive: bool, right: ex.Node
               ) -> str | None:
        """`field in [...]`: "est « A » ou « B »", "n'est ni « A » ni « B »"."""
        items = ex.literal_items(right)
        if items is None or not items or not all(ex.is_scalar(i) for i in items):
            return None
        values = [self._value(given, ex.constant(i)) for i in items]
        if any(v is None for v in values):
            return None
        shown = [v for v in values if v is not None]
        are = "are" if subject.plural else "is"
        if positive:
            return f"{subject.text} {self._be(subject)} {join(shown, self._or)}"
        if self.fr:
            said = "ni " + " ni ".join(shown) if len(shown) > 1 else shown[0]
            return f"{subject.text} {self._not_be(subject, said)}"
        if len(shown) > 1:
            return f"{subject.text} {are} neither {join(shown, 'nor')}"
        return f"{subject.text} {are} not {shown[0]}"

    def _field_value(self, given: Field, subject: _Subject, operator: str, right: ex.Node
                     ) -> str | None:
        """`field <operator> value`."""
        if ex.name_of(right) == "today" and given.type == "date":
            return self._on_date(subject, operator, None)
        if not ex.is_scalar(right):
            return None
        value = ex.constant(right)
        if value is None and operator in ("eq", "ne"):
            return self._given(given, operator == "ne")
        if given.type == "boolean" or isinstance(value, bool):
            if given.type != "boolean" or not isinstance(value, bool) \
                    or operator not in ("eq", "ne"):
                return None
            return self._answer(given, value == (operator == "eq"))
        if given.type == "date":
            day = _iso_date(value)
            return None if day is None else self._on_date(subject, operator, day)
        if operator in _ORDER:
            if given.type not in ("integer", "number") or not isinstance(value, int | float):
                return None
            shown_number = number(value, self.language)
            return f"{subject.text} {self._compared(subject, operator, shown_number)}"
        shown_value = self._value(given, value)
        if shown_value is None or operator not in ("eq", "ne"):
            return None
        if operator == "eq":
            return f"{subject.text} {self._be(subject)} {shown_value}"
        return f"{subject.text} {self._not_be(subject, shown_value)}"

    def _value(self, given: Field, value: Any) -> str | None:
        """A value of `given` as a citizen knows it: an option's label, a country's name."""
        if given.type in ("choice", "multi_choice"):
            option = next((o for o in given.options if o.value == value), None)
            text = option.label.get(self.language) if option else str(value)
            return quoted(text, self.language)
        if given.type == "country" and isinstance(value, str):
            names = COUNTRY_NAMES.get(value.upper())
            return quoted(names[0 if self.fr else 1] if names else value, self.language)
        if given.type in ("integer", "number"):
            if isinstance(value, bool) or not isinstance(value, int | float):
                return None
            return number(value, self.language)
        if isinstance(value, str):
            return quoted(value, self.language)
        return None

    def _includes(self, given: Field, value: Any, positive: bool) -> str | None:
        if given.type not in ("multi_choice", "string", "text"):
            return None
        shown = self._value(given, value)
        if shown is None:
            return None
        subject = _subject(given.label.get(self.language), self.language)
        if self.fr:
            verb = "comprennent" if subject.plural else "comprend"
            return f"{subject.text} {verb if positive else 'ne ' + verb + ' pas'} {shown}"
        if subject.plural:
            return f"{subject.text} {'include' if positive else 'do not include'} {shown}"
        return f"{subject.text} {'includes' if positive else 'does not include'} {shown}"

    def _answer(self, given: Field, yes: bool) -> str:
        label = quoted(given.label.get(self.language), self.language)
        if self.fr:
            return f"la réponse à {label} est {'oui' if yes else 'non'}"
        return f"the answer to {label} is {'yes' if yes else 'no'}"

    def _given(self, given: Field, positive: bool) -> str:
        subject = _subject(given.label.get(self.language), self.language)
        if not self.fr:
            are = "are" if subject.plural else "is"
            return f"{subject.text} {are} {'' if positive else 'not '}given"
        adjective = ("renseigné" + ("e" if subject.feminine else "")
                     + ("s" if subject.plural else ""))
        if positive:
            return f"{subject.text} {self._be(subject)} {adjective}"
        return f"{subject.text} {self._not_be(subject, adjective)}"

    def _age(self, call: ex.Node, operator: str, right: ex.Node) -> str | None:
        arguments = ex.call_arguments(call)
        if not arguments or len(arguments) != 1 or not ex.is_scalar(right):
            return None
        years = ex.constant(right)
        name = ex.name_of(arguments[0])
        if isinstance(years, bool) or not isinstance(years, int) or name not in self.fields \
                or operator not in _MIRROR:
            return None
        n = number(years, self.language)
        if name == "birth_date":
            if self.fr:
                unit = "an" if years == 1 else "ans"
                said = {"lt": f"a moins de {n} {unit}", "lteq": f"a au plus {n} {unit}",
                        "gt": f"a plus de {n} {unit}", "gteq": f"a au moins {n} {unit}",
                        "eq": f"a {n} {unit}", "ne": f"n'a pas {n} {unit}"}[operator]
                return f"le demandeur {said}"
            unit = "year" if years == 1 else "years"
            said = {"lt": f"is under {n}", "lteq": f"is {n} or under", "gt": f"is over {n}",
                    "gteq": f"is {n} or over", "eq": f"is {n} {unit} old",
                    "ne": f"is not {n} {unit} old"}[operator]
            return f"the applicant {said}"
        label = quoted(self.fields[name].label.get(self.language), self.language)
        if self.fr:
            unit = "an" if years == 1 else "ans"
            compared = self._compared(_Subject(""), operator, f"{n} {unit}")
            return f"l'âge déduit de {label} {compared}"
        unit = "year" if years == 1 else "years"
        compared = self._compared(_Subject(""), operator, f"{n} {unit}")
        return f"the age from {label} {compared}"

    def _attached(self, document_id: str, positive: bool) -> str | None:
        document = self.procedure.document(document_id)
        if document is None:
            return None
        label = quoted(document.label.get(self.language), self.language)
        if self.fr:
            verb = "est" if positive else "n'est pas"
            return f"le document {label} {verb} joint"
        return f"the document {label} is {'' if positive else 'not '}attached"

    def _count(self, document_id: str, operator: str, right: ex.Node) -> str | None:
        document = self.procedure.document(document_id)
        count = ex.constant(right) if ex.is_scalar(right) else None
        if document is None or isinstance(count, bool) or not isinstance(count, int) \
                or operator not in _MIRROR:
            return None
        if (operator, count) in (("gt", 0), ("gteq", 1), ("ne", 0)):
            return self._attached(document_id, True)
        if (operator, count) in (("eq", 0), ("lt", 1), ("lteq", 0)):
            return self._attached(document_id, False)
        label = quoted(document.label.get(self.language), self.language)
        n = number(count, self.language)
        if operator == "ne":
            if self.fr:
                return f"le nombre de fichiers joints pour {label} n'est pas {n}"
            return f"the number of files attached for {label} is not {n}"
        if self.fr:
            files = "fichier est joint" if count == 1 and operator in ("eq", "lteq", "gteq") \
                else "fichiers sont joints"
            how = {"lt": "moins de", "lteq": "au plus", "gt": "plus de", "gteq": "au moins",
                   "eq": "exactement"}[operator]
            return f"{how} {n} {files} pour {label}"
        files = "file is" if count == 1 and operator in ("eq", "lteq", "gteq") else "files are"
        how = {"lt": "fewer than", "lteq": "at most", "gt": "more than", "gteq": "at least",
               "eq": "exactly"}[operator]
        return f"{how} {n} {files} attached for {label}"

    def _today(self, operator: str, right: ex.Node) -> str | None:
        if not ex.is_scalar(right):
            return None
        day = _iso_date(ex.constant(right))
        if day is None:
            return None
        subject = _Subject("la date du jour", feminine=True) if self.fr else _Subject("today")
        return self._on_date(subject, operator, day)

    def _amount(self, name: str, operator: str, right: ex.Node) -> str | None:
        value = ex.constant(right) if ex.is_scalar(right) else None
        if isinstance(value, bool) or not isinstance(value, int | float) or operator not in _MIRROR:
            return None
        subject = {
            ("fees_due", True): _Subject("le total des frais"),
            ("fees_paid", True): _Subject("le total payé"),
            ("fees_due", False): _Subject("the total of the fees"),
            ("fees_paid", False): _Subject("the total paid"),
        }[name, self.fr]
        return f"{subject.text} {self._compared(subject, operator, xof(value, self.language))}"

    # small pieces

    @property
    def _or(self) -> str:
        return "ou" if self.fr else "or"

    def _be(self, subject: _Subject) -> str:
        if self.fr:
            return "sont" if subject.plural else "est"
        return "are" if subject.plural else "is"

    def _not_be(self, subject: _Subject, what: str) -> str:
        """"n'est pas X", "ne sont pas X", "n'est ni A ni B", "is not X"."""
        if not self.fr:
            return f"{'are' if subject.plural else 'is'} not {what}"
        verb = "ne sont" if subject.plural else "n'est"
        return f"{verb} {what}" if what.startswith("ni ") else f"{verb} pas {what}"

    def _compared(self, subject: _Subject, operator: str, value: str) -> str:
        """"vaut au moins 10", "is at least 10" (numbers, ages, amounts)."""
        if self.fr:
            verb = "valent" if subject.plural else "vaut"
            how = {"lt": "moins de ", "lteq": "au plus ", "gt": "plus de ", "gteq": "au moins ",
                   "eq": "", "ne": ""}[operator]
            if operator == "ne":
                return f"ne {verb} pas {value}"
            return f"{verb} {how}{value}"
        how = {"lt": "less than ", "lteq": "at most ", "gt": "more than ", "gteq": "at least ",
               "eq": "", "ne": "not "}[operator]
        return f"{'are' if subject.plural else 'is'} {how}{value}"

    def _on_date(self, subject: _Subject, operator: str, day: dt.date | None) -> str | None:
        """A date compared with `day` (None: today)."""
        if operator not in _MIRROR:
            return None
        if self.fr:
            when = "aujourd'hui" if day is None else f"le {date(day, 'fr')}"
            said = {"lt": f"avant {when}", "lteq": f"au plus tard {when}",
                    "gt": f"après {when}", "gteq": f"au plus tôt {when}",
                    "eq": when, "ne": when}[operator]
            if operator == "ne":
                return f"{subject.text} {self._not_be(subject, said)}"
            return f"{subject.text} {self._be(subject)} {said}"
        when = "today" if day is None else date(day, "en")
        said = {"lt": f"before {when}", "lteq": f"on or before {when}",
                "gt": f"after {when}", "gteq": f"on or after {when}",
                "eq": f"{when}" if day is None else f"on {when}",
                "ne": f"not {when}" if day is None else f"not on {when}"}[operator]
        return f"{subject.text} {'are' if subject.plural else 'is'} {said}"


def _is_value(node: ex.Node) -> bool:
    return ex.is_scalar(node) or ex.literal_items(node) is not None


def _iso_date(value: Any) -> dt.date | None:
    if isinstance(value, dt.date):
        return value
    if not isinstance(value, str):
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        return None
