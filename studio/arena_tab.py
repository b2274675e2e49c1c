"""The Arena tab: a blind pair for a prompt, a vote (left, right, tie, both bad), then the reveal and the next pair.

What reaches the browser before the vote is two images (the store's PNG files, written from the pixels alone and
named by their content's hash: no text chunk or other metadata) and generic progress text; the configurations,
seeds and rewards stay on the server (in the session's ``gr.State``, which never leaves it) until the vote is stored.
Sides are swapped at random by ``studio.arena.Arena``; the per-session and per-client vote caps are the store's.

``ArenaSession`` holds the logic without Gradio components, so tests can drive it directly.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass

import gradio as gr

from .arena import Arena
from .components import CheckboxGroup, Radio, text
from .configs import Config, default_arena_configs
from .engine import Engine
from .errors import page_errors
from .explore import EXAMPLES
from .settings import gpu
from .store import MAX_SEED, Store, StoreError, VoteRefused

PAIRINGS = ("baseline vs aligned", "any two of the list")
CHOICES = {"left": "👈 Left is better", "right": "👉 Right is better", "tie": "🤝 Tie", "both_bad": "👎 Both are bad"}
# Pairs have a Gradio concurrency group of their own, apart from Explore's "models": the engine's own lock keeps
# model work one at a time, while the rest of a pair (the store's writes, the images' encoding) overlaps with other
# pairs'. Votes skip Gradio's queue altogether (``queue=False``: one HTTP request, answered at once by a worker
# thread), so a vote never waits behind a pair being made, and costs the server about half what a queued event
# does; the store serialises the writes.
PAIR_GROUP, PAIR_CONCURRENCY = "arena-pairs", 4
CHOSEN = {"left": "the left image", "right": "the right image", "tie": "a tie", "both_bad": "both bad"}
# The vote buttons show while a pair waits for its vote; after it, "Next pair" takes their place. The browser swaps
# them (a class toggled by the events' client-side step): a visibility update from the server would cost it a
# component's config per event, about a fifth of its time with 50 voters at once (a py-spy profile of the load test).
HIDDEN = "arena-hidden"
CSS = f".{HIDDEN} {{ display: none !important; }}"
_SWAP = ("() => {{ document.getElementById('arena-votes')?.classList.{votes}('" + HIDDEN + "'); "
         "document.getElementById('arena-next')?.classList.{next}('" + HIDDEN + "'); }}")
SHOW_VOTES = _SWAP.format(votes="remove", next="add")
SHOW_NEXT = _SWAP.format(votes="add", next="remove")


@dataclass
class PairState:
    """The browser session's arena state (server-side only)."""

    session_id: str | None = None
    comparison_id: str | None = None
    voted: bool = False
    votes_left: int | None = None  # the session's, as of its last pair or vote (None: ask the store)


def client_address(request: gr.Request | None) -> str | None:
    """The client's address for the per-client cap: the first X-Forwarded-For hop behind a trusted proxy (Hugging
    Face Spaces, or STUDIO_TRUST_PROXY=1), else the socket's peer. Stored only as a salted hash."""
    if request is None:
        return None
    if os.environ.get("SPACE_ID") or os.environ.get("STUDIO_TRUST_PROXY") == "1":
        forwarded = (request.headers.get("x-forwarded-for") or "").split(",")[0].strip()
        if forwarded:
            return forwarded
    client = getattr(request, "client", None)
    return getattr(client, "host", None) or None


class ArenaSession:
    """Pairs and votes for the page, over an Engine (images) and a Store (everything recorded)."""

    def __init__(self, engine: Engine, store: Store | None, configs: list[Config] | None = None,
                 store_error: str | None = None, rng: random.Random | None = None):
        self.engine, self.store = engine, store
        self.configs = configs if configs is not None else default_arena_configs(engine.models, engine.settings)
        self.by_label = {c.label: c for c in self.configs}
        self.store_error = store_error or "The vote database is not available."
        self.rng = rng if rng is not None else random.SystemRandom()
        self.arena = Arena(store, self.rng) if store is not None else None

    @property
    def labels(self) -> list[str]:
        return list(self.by_label)

    def _store(self) -> Store:
        if self.store is None:
            raise StoreError(f"{self.store_error} Votes can't be saved right now; the Explore tab still works.")
        return self.store

    def choose(self, pairing: str, labels: list[str] | None) -> tuple[Config, Config]:
        """Two configurations to compare: a baseline and an aligned configuration of the same model, or any two of
        the chosen list; only configurations whose weights are there now."""
        if pairing not in PAIRINGS:
            raise ValueError(f"the pairing must be one of: {', '.join(PAIRINGS)}")
        if isinstance(labels, str):
            labels = [labels]
        if labels is not None and not isinstance(labels, (list, tuple)):
            raise ValueError("the configurations must be a list of names from the list shown")
        labels = self.labels if labels is None else list(labels)
        unknown = [label for label in labels if label not in self.by_label]
        if unknown:
            raise ValueError(f"unknown configuration {unknown[0]!r:.80}")
        ready = [self.by_label[label] for label in labels if self.engine.available(self.by_label[label]) is None]
        if pairing == PAIRINGS[0]:
            aligned = [c for c in ready if c.method != "baseline"
                       and any(b.model == c.model and b.method == "baseline" for b in ready)]
            if not aligned:
                raise ValueError("choose at least one baseline and an aligned configuration of the same model "
                                 "(or the weights of the aligned ones are missing: see the Explore tab)")
            pick = self.rng.choice(aligned)
            return Config.of(pick.model, "baseline"), pick
        if len(ready) < 2:
            raise ValueError("choose at least two configurations whose weights are available")
        names = [c.label for c in ready]
        a, b = self.arena.matchup(names) if self.arena is not None else self.rng.sample(names, 2)
        return self.by_label[a], self.by_label[b]

    def _render(self, config: Config, prompt: str, seed: int, progress) -> dict:
        """One side of a pair, rendered: :meth:`Store.add_generations`'s fields."""
        panel = self.engine.render(config, prompt, seed, progress)
        _, preset = self.engine.resources.pipeline(config.model)
        settings = ({"steps": preset.steps, "guidance_scale": preset.guidance_scale, "resolution": preset.resolution}
                    if preset else {})
        return dict(image=panel.image, model=config.model, method=config.method, config={**settings, **config.config},
                    seed=seed, rewards=panel.rewards, latency_s=panel.seconds, label=config.label)

    def new_pair(self, state: PairState | None, prompt, pairing, labels, address: str | None = None,
                 progress=None):
        """(state, left image file, right image file, votes left). Generic progress text only: nothing names a
        configuration."""
        from alignment import check_prompt

        store = self._store()
        prompt = check_prompt(prompt)
        a, b = self.choose(pairing, labels)  # before the session: a refused choice stores nothing
        state = PairState() if state is None else PairState(state.session_id, votes_left=state.votes_left)
        if state.session_id is None:
            state.session_id, state.votes_left = store.start_session(client_address=address), store.vote_cap
        votes_left = state.votes_left if state.votes_left is not None else store.votes_left(state.session_id)
        if votes_left == 0:  # before anything is made; checked again when the pair is stored
            raise VoteRefused(f"This session has reached its limit of {store.vote_cap} votes. Thank you!")
        seed = self.rng.randrange(MAX_SEED + 1)

        def report(done: int):
            if progress is None:
                return None
            progress(done / 2, "Making the pair…")
            return lambda f, desc=None: progress((done + f) / 2, "Making the pair…")

        sides = [self._render(config, prompt, seed, report(i)) for i, config in enumerate((a, b))]
        pair = self.arena.new_pair(state.session_id, prompt, *sides)  # one transaction, after the model work
        state.comparison_id = pair.comparison_id
        state.votes_left = votes_left  # making a pair spends no vote
        return state, pair.left, pair.right, votes_left

    def vote(self, state: PairState | None, choice: str):
        """(state, reveal, votes left) after storing the vote; VoteRefused (already voted, cap) or ValueError."""
        self._store()  # a StoreError that says why when there is none
        if state is None or state.comparison_id is None:
            raise ValueError("there is no pair to vote on yet: press “New pair”")
        reveal = self.arena.vote(state.session_id, state.comparison_id, choice)
        state = PairState(state.session_id, state.comparison_id, voted=True, votes_left=reveal.votes_left)
        return state, reveal, reveal.votes_left


def reveal_markdown(reveal) -> str:
    """Both configurations and their rewards, after the vote (labels come from the server, never from users)."""
    def side(name, generation):
        rewards = " · ".join(f"{text(k)} {v:.3f}" for k, v in generation["rewards"].items()) or "no reward"
        return f"**{name}**: {text(generation['label'])} — {rewards}"

    verdict = f"You chose **{CHOSEN[reveal.choice]}**"
    if reveal.winner:
        verdict += f": {text(reveal.winner)}"
    return "\n\n".join([verdict + ".", side("Left", reveal.left), side("Right", reveal.right)])


def reward_caption(generation: dict) -> str:
    return " · ".join(f"{text(k)} **{v:.3f}**" for k, v in generation["rewards"].items()) or "no reward"


def build_arena(session: ArenaSession) -> None:
    """The tab's components and events (inside a ``gr.Tab``)."""
    if session.store is not None:
        # the pair's images are served from the store's folder as they are, not decoded, encoded again and copied
        # into Gradio's cache (at 1024² that is most of a pair's time outside the model); the files are named by
        # the hash of their content, so a name says nothing a voter could not see in the image
        gr.set_static_paths([session.store.images.folder])
    state = gr.State(None)

    gr.Markdown("Two images for your prompt, made by two configurations you can't see; the sides are random. "
                "Vote for the better one: the configurations are shown after your vote.")
    with gr.Row():
        prompt = gr.Textbox(value=EXAMPLES[0][0], label="Prompt", max_lines=2, scale=4, elem_id="arena-prompt")
        shuffle = gr.Button("🎲 example prompt", size="sm", scale=1)
        new = gr.Button("New pair", variant="primary", scale=1, elem_id="arena-new")
    with gr.Accordion("Which configurations play", open=False):
        pairing = Radio(list(PAIRINGS), value=PAIRINGS[0], label="Pairing", elem_id="arena-pairing")
        labels = CheckboxGroup(session.labels, value=session.labels, label="Configurations",
                               elem_id="arena-configs")
    with gr.Row():
        with gr.Column(elem_classes="studio-image"):
            left = gr.Image(label="Left", type="filepath", format="png", height=256, interactive=False,
                            buttons=["fullscreen"], alt_text="left image", elem_id="arena-left")
            left_md = gr.Markdown(elem_id="arena-left-reward")
        with gr.Column(elem_classes="studio-image"):
            right = gr.Image(label="Right", type="filepath", format="png", height=256, interactive=False,
                             buttons=["fullscreen"], alt_text="right image", elem_id="arena-right")
            right_md = gr.Markdown(elem_id="arena-right-reward")
    with gr.Row(elem_id="arena-votes", elem_classes=[HIDDEN]):  # shown by SHOW_VOTES, hidden by SHOW_NEXT
        buttons = {c: gr.Button(label, elem_id=f"arena-vote-{c}") for c, label in CHOICES.items()}
    next_pair = gr.Button("Next pair ▶", variant="primary", elem_id="arena-next", elem_classes=[HIDDEN])
    reveal_md = gr.Markdown(elem_id="arena-reveal")
    status = gr.Markdown(elem_id="arena-status")

    @gpu
    @page_errors
    def make_pair(pair_state, text_prompt, chosen_pairing, chosen_labels, request: gr.Request,
                  progress=gr.Progress()):
        try:
            new_state, left_image, right_image, left_votes = session.new_pair(
                pair_state, text_prompt, chosen_pairing, chosen_labels, client_address(request),
                progress=lambda f, desc=None: progress(f, desc="Making the pair…"))
        except VoteRefused as e:
            raise gr.Error(str(e), title="Vote limit") from e
        return new_state, left_image, right_image, "", "", "", f"{left_votes} votes left in this session."

    pair_outputs = [state, left, right, left_md, right_md, reveal_md, status]
    pair_event = dict(fn=make_pair, inputs=[state, prompt, pairing, labels], outputs=pair_outputs,
                      concurrency_id=PAIR_GROUP, concurrency_limit=PAIR_CONCURRENCY)
    new.click(api_name="arena_pair", **pair_event).success(None, js=SHOW_VOTES)
    next_pair.click(api_name=False, **pair_event).success(None, js=SHOW_VOTES)

    def voter(choice: str):
        @page_errors
        def vote(pair_state):
            try:
                new_state, reveal, left_votes = session.vote(pair_state, choice)
            except VoteRefused as e:
                gr.Warning(str(e))
                return pair_state, gr.update(), gr.update(), gr.update(), str(e)
            return (new_state, reveal_markdown(reveal), reward_caption(reveal.left), reward_caption(reveal.right),
                    f"Vote saved. {left_votes} votes left in this session.")
        vote.__name__ = f"vote_{choice}"
        return vote

    for choice, button in buttons.items():
        button.click(voter(choice), inputs=state, outputs=[state, reveal_md, left_md, right_md, status],
                     api_name=f"vote_{choice}", queue=False).success(None, js=SHOW_NEXT)
    shuffle.click(lambda: random.choice(EXAMPLES)[0], outputs=prompt, api_name=False, queue=False)
