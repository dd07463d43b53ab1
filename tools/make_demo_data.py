"""Write the project's own demo data set into r2r_jax/demo_data/ (deterministic; rerun to regenerate).

The passages are written for the project from the hand-written topics below: 20 topics with 3 background
sentences and 5 facts each (query, aspect, answer sentence, hint sentence). Passages:
  - an answer passage per fact (a background sentence + the answer)       -> grade 3 for that fact's query
  - a hint passage per fact (a background sentence + a vague hint)         -> grade 2
  - an overview passage per topic; every other passage of the same topic   -> grade 1
  - passages of other topics                                               -> grade 0
Candidates come from a small BM25 (k1 0.9, b 0.4) over all 220 passages. The "teacher" is templated from
the known grades (no LLM): ranking by grade then BM25 score, a direct reason per candidate and comparison
reasons for adjacent pairs of the top of its ranking. Facts 1-4 of each topic are the 80 training queries,
fact 5 the 20 held-out dev queries (BM25 top-20, no gold injection).

    python tools/make_demo_data.py [--out r2r_jax/demo_data]
"""

from __future__ import annotations

import argparse
import math
import random
import re
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from r2r_jax.data.candidates import QueryCandidates, ScoredPassage, write_candidates  # noqa: E402
from r2r_jax.data.records import Candidate, Comparison, TeacherRecord, write_records  # noqa: E402

SEED = 20241007
TRAIN_K, DEV_K, TRAIN_FACTS = 10, 20, 4

# (topic name, 3 background sentences, 5 facts of (query, aspect, answer, hint))
TOPICS: list[tuple[str, list[str], list[tuple[str, str, str, str]]]] = [
    ("honeybees", [
        "Honeybees live in colonies of tens of thousands of workers, a few hundred drones and a single queen.",
        "Beekeepers have kept honeybees in wooden hives for centuries, mainly for honey and beeswax.",
        "Honeybees are among the most studied insects because of their complex social life."], [
        ("how do honeybees tell each other where flowers are", "how bees share the location of flowers",
         "A forager that finds good flowers performs a waggle dance on the comb: the angle of the dance shows "
         "the direction relative to the sun and the length of the waggle run shows the distance.",
         "Worker bees share information about food with their nestmates when they return to the hive."),
        ("how do bees make honey from nectar", "how nectar becomes honey",
         "Bees add enzymes to the nectar they collect, store it in wax cells and fan it with their wings until "
         "most of the water evaporates and the nectar thickens into honey.",
         "Honey is produced inside the hive from material that the bees bring back from flowers."),
        ("how long does a worker bee live", "the lifespan of worker bees",
         "A worker bee born in summer lives only about five to six weeks, while workers born in autumn can "
         "survive the winter for several months.",
         "The lifespan of a worker bee depends strongly on the season in which it is born."),
        ("what does the queen bee do in the hive", "the role of the queen bee",
         "The queen is the only fertile female in the colony; she lays up to two thousand eggs a day and her "
         "scent keeps the workers together.",
         "Every colony depends on its queen, and the workers tend her constantly."),
        ("why do honeybees swarm", "why colonies swarm",
         "Swarming is how a colony reproduces: when the hive gets crowded, the old queen leaves with about half "
         "of the workers to found a new nest while a new queen takes over the old one.",
         "In late spring beekeepers often see large clouds of bees leaving a hive."),
    ]),
    ("volcanoes", [
        "A volcano is an opening in the crust of a planet through which molten rock, ash and gases escape.",
        "There are more than a thousand potentially active volcanoes on land, and many more lie under the sea.",
        "Volcanic soils are often very fertile, which is why farmers live close to active volcanoes."], [
        ("what causes a volcano to erupt", "what makes a volcano erupt",
         "Eruptions happen when magma rises because it is lighter than the surrounding rock and the gases "
         "dissolved in it expand, building pressure until the magma breaks through the surface.",
         "Scientists have studied for a long time why some volcanoes erupt and others stay quiet."),
        ("what is the difference between magma and lava", "the difference between magma and lava",
         "Molten rock is called magma while it is still underground and lava once it has reached the surface "
         "and flows out of the volcano.",
         "Geologists use different words for molten rock depending on where it is found."),
        ("why are some volcanic eruptions explosive", "why some eruptions are explosive",
         "Thick, silica-rich magma traps gas bubbles, so pressure builds until the magma shatters into ash, "
         "while runny basalt magma lets gas escape and produces gentle lava flows.",
         "Some eruptions produce quiet lava flows while others blast ash high into the sky."),
        ("how do scientists predict volcanic eruptions", "how eruptions are forecast",
         "Volcanologists watch for swarms of small earthquakes, swelling of the ground and changes in the gases "
         "released, which often signal that magma is moving upward.",
         "Monitoring stations are installed on many volcanoes that lie near towns."),
        ("what is the ring of fire", "the Ring of Fire",
         "The Ring of Fire is a horseshoe-shaped belt around the Pacific Ocean where plates collide, and it "
         "holds about three quarters of the world's active volcanoes.",
         "Many of the world's best known volcanoes lie around the edges of one large ocean."),
    ]),
    ("ocean tides", [
        "Tides are the regular rise and fall of the sea along coastlines around the world.",
        "Fishermen, sailors and harbor pilots plan their work around tide tables.",
        "The height of the tide varies greatly from place to place along a coast."], [
        ("what causes ocean tides", "what causes the tides",
         "Tides are caused mainly by the gravity of the Moon, which pulls the ocean into two bulges, one facing "
         "the Moon and one on the opposite side of the Earth.",
         "The cause of the tides puzzled people for a long time before it was linked to the sky."),
        ("how many high tides are there each day", "how often high tide occurs",
         "Most coasts have two high tides and two low tides every lunar day of about 24 hours and 50 minutes, "
         "so high tide comes almost an hour later each day.",
         "The timing of high water changes from one day to the next."),
        ("what are spring tides and neap tides", "spring and neap tides",
         "Spring tides, with the largest range, happen at new and full moon when the Sun and Moon pull in line; "
         "neap tides, with the smallest range, happen at the quarter moons.",
         "The difference between high and low water is not the same every week."),
        ("where are the highest tides in the world", "where tides are highest",
         "The Bay of Fundy in Canada has the highest tides in the world, with a difference of up to sixteen "
         "meters between low and high water.",
         "Some bays and estuaries are famous for their unusually large tides."),
        ("can tides be used to generate electricity", "tidal power",
         "Tidal power stations use barrages or underwater turbines to turn the flow of water in and out of a "
         "bay into electricity, and because tides are predictable the output can be planned years ahead.",
         "Engineers have long looked at the moving sea as a possible source of energy."),
    ]),
    ("sourdough bread", [
        "Sourdough is one of the oldest ways of making bread, used long before commercial yeast existed.",
        "Many bakers keep the same sourdough culture alive for years by feeding it regularly.",
        "Sourdough loaves have a chewy crumb, a thick crust and a slightly sour taste."], [
        ("what is a sourdough starter", "what a sourdough starter is",
         "A starter is a mixture of flour and water in which wild yeasts and lactic acid bacteria grow; a "
         "spoonful of it is used to raise each new batch of dough.",
         "Every sourdough loaf begins with a small amount of a living culture."),
        ("why does sourdough bread taste sour", "why sourdough tastes sour",
         "The sour taste comes from lactic and acetic acids made by the bacteria in the starter as they ferment "
         "the sugars in the flour.",
         "The flavor of sourdough is quite different from that of ordinary yeasted bread."),
        ("how often should you feed a sourdough starter", "how often to feed a starter",
         "A starter kept at room temperature should be fed fresh flour and water once or twice a day, while one "
         "kept in the fridge needs feeding only about once a week.",
         "Looking after a starter takes a little regular attention."),
        ("how long does sourdough take to rise", "how long sourdough takes to rise",
         "Because wild yeast works slowly, sourdough usually needs four to twelve hours of rising, depending on "
         "the temperature and the strength of the starter.",
         "Sourdough bakers have to plan their baking day carefully."),
        ("is sourdough bread easier to digest", "whether sourdough is easier to digest",
         "The long fermentation breaks down part of the starches and proteins in the flour, which is why some "
         "people find sourdough easier to digest than quickly made bread.",
         "Some people say they feel better after eating sourdough than other breads."),
    ]),
    ("solar panels", [
        "Solar panels have become a common sight on rooftops, farms and office buildings.",
        "The price of solar panels fell by about ninety percent between 2010 and 2020.",
        "Solar panels are usually mounted facing the equator and tilted toward the midday sun."], [
        ("how do solar panels turn sunlight into electricity", "how solar cells produce electricity",
         "Solar cells are made of silicon layers that form a junction; when light hits the cell it frees "
         "electrons, and the electric field at the junction pushes them through a circuit as current.",
         "The basic physics behind solar cells was discovered in the nineteenth century."),
        ("how efficient are solar panels", "the efficiency of solar panels",
         "Typical rooftop panels convert about eighteen to twenty two percent of the sunlight that falls on "
         "them into electricity.",
         "Manufacturers compete on how much of the sunlight their panels can use."),
        ("do solar panels work on cloudy days", "solar panels under clouds",
         "Solar panels still produce power on cloudy days because diffuse light gets through the clouds, but "
         "the output can fall to between a tenth and a quarter of the output in full sun.",
         "Weather has a noticeable effect on how much power a solar installation delivers."),
        ("how long do solar panels last", "the lifetime of solar panels",
         "Most solar panels come with a twenty five year warranty and lose roughly half a percent of their "
         "output each year, so many keep working for thirty years or more.",
         "Buyers often ask how many years a solar installation will keep paying off."),
        ("what does a solar inverter do", "the job of the inverter",
         "Panels produce direct current, and the inverter converts it into the alternating current used by "
         "household appliances and the power grid.",
         "Besides the panels themselves, a solar system needs some electronic equipment."),
    ]),
    ("the printing press", [
        "The printing press is often named as one of the most important inventions of the last thousand years.",
        "Before printing, books in Europe were copied by hand, often by monks in monasteries.",
        "Within a few decades printing workshops had opened in hundreds of European towns."], [
        ("who invented the printing press", "who invented the printing press",
         "Johannes Gutenberg, a goldsmith from Mainz, developed a printing press with movable metal type "
         "around 1440.",
         "The inventor of the European printing press worked in a German city on the Rhine."),
        ("what was the first major book printed with movable type", "the first major printed book",
         "The Gutenberg Bible, finished around 1455 in Mainz, was the first major book printed in Europe with "
         "movable metal type, and about 180 copies were made.",
         "Early printers chose important texts for their first large projects."),
        ("how did movable type work", "how movable type worked",
         "Individual letters were cast in metal from a mould, arranged by hand into lines of text, inked and "
         "pressed onto paper, then reused for the next page.",
         "The printing method relied on many small pieces of metal."),
        ("how did the printing press change europe", "the effects of printing on Europe",
         "Printing made books far cheaper, spread new ideas quickly during the Reformation and the scientific "
         "revolution, and helped more people learn to read.",
         "Historians still debate how much printing changed European society."),
        ("was printing invented in china before europe", "earlier printing in Asia",
         "Woodblock printing was used in China centuries before Gutenberg, and Bi Sheng made movable type from "
         "baked clay around 1040.",
         "Printing has a long history outside Europe as well."),
    ]),
    ("octopuses", [
        "Octopuses are soft-bodied animals with eight arms that live in every ocean.",
        "Octopuses belong to the cephalopods, the same group as squid and cuttlefish.",
        "Divers often find octopuses hiding in rocky dens surrounded by empty shells."], [
        ("how many hearts does an octopus have", "the number of hearts in an octopus",
         "An octopus has three hearts: two pump blood through the gills and the third pumps it through the "
         "rest of the body.",
         "The circulatory system of an octopus is unlike that of a fish."),
        ("why is octopus blood blue", "why octopus blood is blue",
         "Octopus blood carries oxygen with a copper-based protein called hemocyanin, which turns blue when it "
         "binds oxygen.",
         "The color of octopus blood surprises many people who see it for the first time."),
        ("how do octopuses change color", "how octopuses change color",
         "Their skin holds thousands of pigment cells called chromatophores, which muscles stretch or squeeze "
         "to change color and pattern within a fraction of a second.",
         "Octopuses are famous masters of camouflage."),
        ("how intelligent are octopuses", "octopus intelligence",
         "Octopuses can open jars, find their way through mazes and learn by watching, and about two thirds "
         "of their neurons are found in their arms.",
         "Many aquarium keepers tell stories about clever octopuses."),
        ("how long do octopuses live", "the lifespan of octopuses",
         "Most octopuses live only one to two years, and females usually die soon after their eggs hatch.",
         "For such clever animals, octopuses have a surprisingly short life."),
    ]),
    ("glaciers", [
        "Glaciers are large masses of ice that move slowly over land under their own weight.",
        "About two thirds of the world's fresh water is stored as ice in glaciers and ice sheets.",
        "Glaciers are found on every continent except Australia."], [
        ("how does a glacier form", "how glaciers form",
         "A glacier forms where more snow falls in winter than melts in summer; over many years the snow is "
         "buried and compressed into dense glacial ice.",
         "Glaciers need particular conditions to form and grow."),
        ("how fast do glaciers move", "how fast glaciers move",
         "Most glaciers move a few centimeters to a few meters per day, but some outlet glaciers in Greenland "
         "flow more than forty meters a day.",
         "Although they look still, glaciers are always on the move."),
        ("why is glacier ice blue", "why glacier ice looks blue",
         "Dense glacier ice has few air bubbles, so light travels deep into it, and the ice absorbs red light "
         "while blue light is scattered back out.",
         "Visitors to glaciers are often struck by the color of the ice."),
        ("how do glaciers shape valleys", "how glaciers shape the land",
         "As glaciers move they scrape rock with the stones frozen into their base, turning narrow river "
         "valleys into wide valleys with a U-shaped profile.",
         "Many mountain landscapes were shaped during past ice ages."),
        ("why are glaciers shrinking", "why glaciers are retreating",
         "Glaciers shrink when warmer summers melt more ice than winter snow replaces, and most glaciers "
         "worldwide have been retreating since the middle of the nineteenth century.",
         "Old photographs show many glaciers reaching much further than they do today."),
    ]),
    ("vaccines", [
        "Vaccines are one of the most effective tools of public health.",
        "Vaccination campaigns eliminated smallpox worldwide in 1980.",
        "Most countries have a schedule of recommended vaccines for children and adults."], [
        ("how do vaccines work", "how vaccines protect the body",
         "A vaccine shows the immune system a harmless piece or weakened form of a germ, so the body makes "
         "antibodies and memory cells that recognise the real germ quickly later on.",
         "Vaccines work together with the body's own defenses."),
        ("who made the first vaccine", "the first vaccine",
         "Edward Jenner made the first vaccine in 1796 when he showed that material from cowpox sores "
         "protected a boy against smallpox.",
         "The history of vaccination began in England in the eighteenth century."),
        ("what is herd immunity", "herd immunity",
         "Herd immunity means that when enough people in a community are immune, a germ cannot spread easily, "
         "which also protects people who cannot be vaccinated.",
         "Vaccination protects more people than just those who receive it."),
        ("why are some vaccines given more than once", "why booster doses are needed",
         "Booster doses remind the immune system of the germ so that protection which fades over time is "
         "built up again.",
         "Some vaccination schedules include several doses spread over years."),
        ("why do vaccines sometimes cause a sore arm or fever", "common side effects of vaccines",
         "A sore arm, tiredness or a mild fever are signs that the immune system is responding to the vaccine, "
         "and they usually pass within a day or two.",
         "Doctors explain to patients what they may feel after a vaccination."),
    ]),
    ("coffee", [
        "Coffee is one of the most widely traded agricultural products in the world.",
        "Coffee plants grow best in the tropics, in a belt around the equator.",
        "People drink coffee in many ways, from espresso to filter coffee to cold brew."], [
        ("where does coffee come from originally", "the origin of coffee",
         "The coffee plant comes from the highlands of Ethiopia, and coffee drinking first spread through "
         "Yemen and the Arab world in the fifteenth century.",
         "Coffee has a long history before it reached European coffee houses."),
        ("what is the difference between arabica and robusta", "arabica and robusta beans",
         "Arabica beans grow at higher altitudes and give a sweeter, milder cup, while robusta is hardier, "
         "more bitter and contains about twice as much caffeine.",
         "Coffee shops often advertise which kind of bean they use."),
        ("how much caffeine is in a cup of coffee", "the caffeine in a cup of coffee",
         "A typical cup of brewed coffee contains about eighty to one hundred milligrams of caffeine, and a "
         "single shot of espresso about sixty.",
         "The caffeine in coffee is the main reason many people drink it."),
        ("why are coffee beans roasted", "why coffee is roasted",
         "Roasting turns the hard green beans brown and brittle and creates the hundreds of aroma compounds "
         "that give coffee its flavor.",
         "Green coffee beans look and smell very different from the beans sold in shops."),
        ("how is decaffeinated coffee made", "how decaf is made",
         "To make decaf, green beans are soaked in water and the caffeine is removed with a solvent, with "
         "carbon dioxide, or by filtering the water through charcoal before roasting.",
         "People who want to avoid caffeine can still buy coffee made for them."),
    ]),
    ("lighthouses", [
        "Lighthouses have guided ships along dangerous coasts for more than two thousand years.",
        "Many old lighthouses are now museums or holiday homes.",
        "Lighthouses are usually built on headlands, reefs or at harbor entrances."], [
        ("what was the first lighthouse", "the first lighthouse",
         "The Pharos of Alexandria, built in Egypt around 280 BC, is the earliest known lighthouse and stood "
         "for over a thousand years.",
         "The idea of a tower with a fire to guide ships is very old."),
        ("how can sailors tell lighthouses apart", "how lighthouses are told apart",
         "Each lighthouse has its own light characteristic, a pattern of flashes and colors printed on "
         "nautical charts, and many towers also have distinctive painted bands.",
         "Sailors at night need to know which light they are looking at."),
        ("what is a fresnel lens", "the Fresnel lens",
         "The Fresnel lens, invented by Augustin Fresnel in 1822, uses rings of glass prisms to bend the light "
         "of a lamp into a strong beam visible more than twenty miles away.",
         "Lighthouse optics improved greatly in the nineteenth century."),
        ("what did a lighthouse keeper do", "the work of a lighthouse keeper",
         "Keepers lit the lamp at dusk, trimmed the wicks, wound the clockwork that turned the lens, and kept "
         "the glass clean through the night.",
         "Before automation every lighthouse had people living at it."),
        ("are lighthouses still used today", "lighthouses in modern navigation",
         "Most lighthouses are now automatic and still serve as a backup to satellite navigation, although "
         "some have been switched off as ships rely on GPS.",
         "Modern ships carry much more equipment for navigation than in the past."),
    ]),
    ("bicycles", [
        "The bicycle is the most energy efficient way for a person to travel on land.",
        "There are more than a billion bicycles in the world.",
        "Cities around the world build bike lanes to make cycling safer."], [
        ("who invented the bicycle", "the invention of the bicycle",
         "The first two-wheeled machine was the running machine built by Karl Drais in 1817, which riders "
         "pushed along with their feet, and pedals were added in the 1860s.",
         "The bicycle developed over several decades of the nineteenth century."),
        ("how do bicycle gears work", "how bicycle gears work",
         "Gears change how far the wheel turns for each turn of the pedals: a small front ring with a large "
         "rear cog makes climbing easier, while the opposite gives more speed.",
         "Most modern bicycles have several gears."),
        ("why does a moving bicycle stay upright", "why a moving bicycle stays upright",
         "A moving bicycle stays upright mostly because the rider and the front fork steer the wheel into the "
         "direction of a lean, bringing the wheels back under the center of mass.",
         "Physicists have argued for a long time about how bicycles balance."),
        ("what is the correct tire pressure for a bike", "tire pressure for bicycles",
         "Road bike tires are usually pumped to about six to eight bar, while mountain bike tires run at around "
         "two bar for grip; the range is printed on the tire wall.",
         "Keeping the tires properly inflated makes cycling easier."),
        ("how often should you oil a bicycle chain", "how often to oil a chain",
         "A chain should be cleaned and oiled every few hundred kilometers, and always after riding in rain, "
         "to keep it quiet and stop it from rusting.",
         "A little regular maintenance keeps a bicycle running well."),
    ]),
    ("tea", [
        "Tea is the most widely consumed drink in the world after water.",
        "Tea bushes are grown on plantations in China, India, Kenya, Sri Lanka and many other countries.",
        "Many cultures have their own tea customs, from Japanese ceremonies to British afternoon tea."], [
        ("what is the difference between green tea and black tea", "green and black tea",
         "Green and black tea come from the same plant; green tea leaves are heated soon after picking to stop "
         "oxidation, while black tea leaves are left to oxidise fully, which darkens them.",
         "Shops sell many kinds of tea with different colors and tastes."),
        ("how much caffeine does tea have", "the caffeine in tea",
         "A cup of black tea has about forty to seventy milligrams of caffeine, roughly half of a cup of "
         "coffee, and green tea usually has a little less.",
         "Tea also contains stimulants, like coffee."),
        ("what temperature should water be for green tea", "water temperature for green tea",
         "Green tea is best brewed with water at about seventy to eighty degrees Celsius, because boiling water "
         "makes it bitter.",
         "Tea experts recommend brewing different teas in different ways."),
        ("where did tea drinking start", "the origin of tea drinking",
         "Tea drinking began in southwest China, where it was first used as a medicine, and it became a daily "
         "drink during the Tang dynasty.",
         "Tea has been drunk for thousands of years."),
        ("is herbal tea real tea", "whether herbal tea is tea",
         "Herbal teas such as chamomile or peppermint are not made from the tea plant at all, so tea experts "
         "call them infusions or tisanes.",
         "Many drinks sold as tea are made from other plants."),
    ]),
    ("rainbows", [
        "Rainbows are among the most admired sights in the sky.",
        "Rainbows appear in stories and myths of cultures all over the world.",
        "Photographers chase rainbows after summer showers."], [
        ("how does a rainbow form", "how rainbows form",
         "A rainbow forms when sunlight enters raindrops, is bent and split into colors, reflects off the back "
         "of each drop and leaves toward the observer.",
         "Rainbows need both sun and rain at the same time."),
        ("why is a rainbow curved", "why rainbows are curved",
         "A rainbow is part of a circle because each color leaves the drops at a fixed angle of about forty two "
         "degrees from the point directly opposite the sun.",
         "The shape of a rainbow follows from simple geometry."),
        ("what is a double rainbow", "double rainbows",
         "A double rainbow appears when light reflects twice inside the drops; the second bow is fainter, wider "
         "and has its colors in reverse order.",
         "Sometimes a second, weaker bow can be seen in the sky."),
        ("why can you see rainbows only with the sun behind you", "where to look for a rainbow",
         "Because the light is reflected back out of the drops, a rainbow is always opposite the sun, so you "
         "must stand with the sun at your back to see one.",
         "Knowing where to look makes rainbows easier to find."),
        ("what are the colors of the rainbow", "the colors of the rainbow",
         "A rainbow shows a continuous spectrum that is traditionally named red, orange, yellow, green, blue, "
         "indigo and violet, with red on the outside.",
         "Children learn a rhyme to remember the order of colors in the sky."),
    ]),
    ("compost", [
        "Composting turns kitchen and garden waste into a dark, crumbly material that improves soil.",
        "Many towns collect food scraps separately to make compost on a large scale.",
        "A compost heap can be a simple pile in the corner of a garden or a closed bin."], [
        ("what can you put in a compost bin", "what belongs in compost",
         "Fruit and vegetable scraps, coffee grounds, grass clippings, leaves and shredded paper can all be "
         "composted, but meat, dairy and oily food attract pests.",
         "Not all kitchen waste is suitable for a garden compost heap."),
        ("how long does compost take to be ready", "how long composting takes",
         "A well turned hot compost heap can be ready in two to three months, while a heap that is left alone "
         "may take a year or more.",
         "Patience is part of composting."),
        ("why does compost need both green and brown material", "the balance of green and brown material",
         "Green material such as grass supplies nitrogen and brown material such as dry leaves supplies carbon; "
         "microbes need both, roughly one part green to two or three parts brown.",
         "Gardeners talk about greens and browns when they build a heap."),
        ("why does my compost smell bad", "why compost smells",
         "A bad smell usually means the heap is too wet or packed and lacks air; turning it and adding dry "
         "brown material lets the oxygen-loving microbes return.",
         "A healthy compost heap should smell of earth."),
        ("why does a compost heap get hot", "why compost heats up",
         "Microbes breaking down the waste release heat, and the middle of an active heap can reach fifty to "
         "seventy degrees Celsius, which also kills many weed seeds.",
         "On a cold morning a compost heap may be steaming."),
    ]),
    ("owls", [
        "Owls are birds of prey found on every continent except Antarctica.",
        "There are around two hundred species of owls, from tiny elf owls to large eagle owls.",
        "Owls appear in folklore as symbols of wisdom and sometimes of bad luck."], [
        ("how do owls fly so quietly", "how owls fly silently",
         "Owl feathers have comb-like front edges and soft fringes that break up the air flow, so their wing "
         "beats make almost no sound.",
         "Owls can approach their prey without being heard."),
        ("can owls turn their heads all the way around", "how far owls turn their heads",
         "Owls can turn their heads about 270 degrees, thanks to extra neck bones and blood vessels that keep "
         "blood flowing while the neck twists.",
         "Owls move their heads a lot because their eyes cannot move in their sockets."),
        ("how do owls find prey in the dark", "how owls hunt in the dark",
         "Many owls locate prey by sound; their ear openings sit at different heights on the head, which lets "
         "them pinpoint a mouse under snow or leaves.",
         "Owls are skilled night hunters."),
        ("what are owl pellets", "owl pellets",
         "Owls swallow small prey whole and later cough up pellets of the fur and bones they cannot digest, "
         "which scientists study to learn what the owls eat.",
         "Under an owl's roost one often finds small grey lumps."),
        ("why do owls have big eyes", "why owls have large eyes",
         "Large eyes gather more light, and owl eyes are packed with rod cells, which allows them to see in "
         "very dim light.",
         "Owls have very striking faces."),
    ]),
    ("the moon", [
        "The Moon is the Earth's only natural satellite and the fifth largest moon in the solar system.",
        "Twelve astronauts walked on the Moon between 1969 and 1972.",
        "The Moon has been watched and recorded by every human culture."], [
        ("why does the moon have phases", "why the Moon has phases",
         "The phases appear because we see different parts of the sunlit half of the Moon as it orbits the "
         "Earth, from new moon through full moon and back in about twenty nine and a half days.",
         "The appearance of the Moon changes night by night over the month."),
        ("why do we always see the same side of the moon", "why one side of the Moon faces Earth",
         "The Moon is tidally locked: it rotates once on its axis in the same time it takes to orbit the "
         "Earth, so the same side always faces us.",
         "People on Earth never saw the far side of the Moon before spacecraft photographed it."),
        ("how far away is the moon", "the distance to the Moon",
         "The Moon is on average about 384,000 kilometers from Earth, a distance light covers in about 1.3 "
         "seconds.",
         "The Moon looks close but the trip there took astronauts three days."),
        ("how did the moon form", "how the Moon formed",
         "Most scientists think the Moon formed from debris thrown out when a Mars-sized body collided with "
         "the young Earth about 4.5 billion years ago.",
         "The origin of the Moon was long a mystery for astronomers."),
        ("what causes a lunar eclipse", "lunar eclipses",
         "A lunar eclipse happens at full moon when the Earth passes between the Sun and the Moon and the "
         "Earth's shadow falls on the Moon, often turning it a coppery red.",
         "Sometimes the full Moon darkens for an hour or more."),
    ]),
    ("bamboo", [
        "Bamboo is a group of grasses that includes some of the fastest growing plants on Earth.",
        "Bamboo is used for building, furniture, paper and food, especially in Asia.",
        "Giant pandas feed almost entirely on bamboo."], [
        ("how fast does bamboo grow", "how fast bamboo grows",
         "Some species of bamboo can grow almost a meter in a single day, and a new shoot reaches its full "
         "height in just a few months.",
         "Bamboo is known for the speed of its growth."),
        ("is bamboo a tree or a grass", "whether bamboo is a grass",
         "Bamboo is a grass, not a tree: it belongs to the grass family, and its woody stems, called culms, do "
         "not grow thicker each year the way tree trunks do.",
         "Although it can be as tall as a tree, bamboo is classified differently."),
        ("how strong is bamboo as a building material", "the strength of bamboo",
         "For its weight bamboo has a tensile strength comparable to some steels, which is why it is used for "
         "scaffolding on high-rise buildings in parts of Asia.",
         "Builders have valued bamboo for a very long time."),
        ("why does bamboo flower all at once", "mass flowering of bamboo",
         "Many bamboo species flower only once every few decades, and all plants of a species flower at the "
         "same time and then die, possibly to overwhelm seed eaters.",
         "Bamboo flowers are rarely seen."),
        ("how do you stop bamboo from spreading", "controlling spreading bamboo",
         "Running bamboo spreads with underground stems, so gardeners sink a plastic root barrier about sixty "
         "centimeters deep around it or choose clumping varieties.",
         "Bamboo can become a problem in small gardens."),
    ]),
    ("lithium-ion batteries", [
        "Rechargeable lithium-ion batteries power phones, laptops and electric cars.",
        "The 2019 Nobel Prize in Chemistry was awarded for the development of the lithium-ion battery.",
        "Battery factories are being built around the world to supply electric vehicles."], [
        ("how does a lithium ion battery work", "how lithium-ion batteries work",
         "During charging lithium ions move from the cathode through the electrolyte into the graphite anode, "
         "and during use they flow back while electrons travel through the external circuit.",
         "Lithium-ion batteries rely on chemistry inside a sealed cell."),
        ("why do batteries lose capacity over time", "why batteries wear out",
         "Batteries lose capacity because each charge cycle causes side reactions that grow a film on the "
         "electrodes and use up some of the lithium.",
         "Phone owners notice that their battery lasts less after a few years."),
        ("is it bad to charge a phone to 100 percent", "charging to full capacity",
         "Keeping a lithium-ion battery at full charge, especially when warm, speeds up its aging, which is why "
         "many phones can stop charging at eighty percent.",
         "Phone makers give advice on charging habits."),
        ("why do lithium batteries sometimes catch fire", "battery fires",
         "If a cell is damaged, overcharged or badly made, an internal short circuit can heat it until the "
         "electrolyte breaks down in a chain reaction called thermal runaway.",
         "Airlines have special rules for carrying batteries."),
        ("can lithium batteries be recycled", "battery recycling",
         "Old lithium-ion batteries can be recycled by shredding and melting or dissolving them to recover "
         "cobalt, nickel, copper and lithium for new batteries.",
         "Used batteries should not go in the household rubbish."),
    ]),
    ("suspension bridges", [
        "Suspension bridges can span longer distances than any other type of bridge.",
        "The Golden Gate Bridge in San Francisco is one of the best known suspension bridges.",
        "Building a large suspension bridge takes many years and thousands of workers."], [
        ("how does a suspension bridge hold up its deck", "how a suspension bridge carries its deck",
         "The deck hangs from vertical cables attached to main cables that run over tall towers and are "
         "anchored in massive blocks at each end, so the load is carried by tension.",
         "Suspension bridges use cables in a special way."),
        ("what is the longest suspension bridge in the world", "the longest suspension bridge",
         "The 1915 Canakkale Bridge in Turkey, opened in 2022, has the longest main span of any suspension "
         "bridge at 2,023 meters.",
         "Engineers keep building longer and longer suspension bridges."),
        ("why did the tacoma narrows bridge collapse", "the Tacoma Narrows collapse",
         "The Tacoma Narrows Bridge collapsed in 1940 because wind caused its thin, flexible deck to twist in "
         "growing oscillations until it tore apart.",
         "One famous bridge failure taught engineers important lessons."),
        ("how are the main cables of a suspension bridge made", "how main cables are built",
         "Main cables are spun on site from thousands of thin steel wires, pulled across the span one by one "
         "and then compacted into a round cable.",
         "The main cables are among the most impressive parts of a suspension bridge."),
        ("why do suspension bridges have towers", "the role of the towers",
         "The towers lift the main cables high above the deck and carry their weight down to the foundations, "
         "turning the pull of the cables into compression.",
         "Tall towers are the most visible feature of these bridges."),
    ]),
]

STOP = set("a an and are as at be by can do does for from how in is it of on or the to was what when where "
           "which who why with you your".split())


def words(text: str) -> list[str]:
    return [w for w in re.findall(r"[a-z0-9]+", text.lower()) if w not in STOP]


class BM25:
    def __init__(self, docs: list[str], k1: float = 0.9, b: float = 0.4):
        self.tf = [Counter(words(d)) for d in docs]
        self.len = [sum(tf.values()) for tf in self.tf]
        self.avg = sum(self.len) / len(docs)
        df = Counter(w for tf in self.tf for w in tf)
        self.idf = {w: math.log(1 + (len(docs) - n + 0.5) / (n + 0.5)) for w, n in df.items()}
        self.k1, self.b = k1, b

    def top(self, query: str, k: int) -> list[tuple[int, float]]:
        scores = []
        for i, tf in enumerate(self.tf):
            s = 0.0
            for w in words(query):
                if w in tf:
                    norm = self.k1 * (1 - self.b + self.b * self.len[i] / self.avg)
                    s += self.idf[w] * tf[w] * (self.k1 + 1) / (tf[w] + norm)
            scores.append((i, round(s, 4)))
        return sorted(scores, key=lambda x: (-x[1], x[0]))[:k]


def build_passages(rng: random.Random) -> list[dict]:
    """All passages with their origin (topic, fact, kind), shuffled, with docids demo-p000..."""
    passages = []
    for t, (_, intro, facts) in enumerate(TOPICS):
        for f, (_, _, answer, hint) in enumerate(facts):
            for kind, sentence, background in (("answer", answer, intro[f % 3]), ("hint", hint, intro[(f + 1) % 3])):
                parts = [background, sentence] if rng.random() < 0.6 else [sentence, background]
                passages.append({"topic": t, "fact": f, "kind": kind, "text": " ".join(parts)})
        passages.append({"topic": t, "fact": None, "kind": "overview", "text": " ".join(intro)})
    rng.shuffle(passages)
    for i, p in enumerate(passages):
        p["docid"] = f"demo-p{i:03d}"
    return passages


def grade(t: int, f: int, p: dict) -> int:
    if p["topic"] != t:
        return 0
    if p["fact"] == f:
        return 3 if p["kind"] == "answer" else 2
    return 1


def direct_reason(t: int, f: int, p: dict, rng: random.Random) -> str:
    name, aspect = TOPICS[t][0], TOPICS[t][2][f][1]
    g = grade(t, f, p)
    if g == 3:
        return rng.choice([f"The passage answers the question directly: it explains {aspect}.",
                           f"This passage gives the answer, explaining {aspect} in concrete terms."])
    if g == 2:
        return rng.choice([f"The passage touches on {aspect} but gives no specifics, so it answers the question "
                           "only in part.",
                           f"The passage points to {aspect} without saying anything concrete about it."])
    if g == 1:
        if p["fact"] is None:
            return f"The passage gives general background on {name} but does not explain {aspect}."
        other = TOPICS[t][2][p["fact"]][1]
        return rng.choice([f"The passage is about {name} but discusses {other} rather than {aspect}.",
                           f"The passage stays on {name}, yet it covers {other}, not {aspect}."])
    return rng.choice([f"The passage is about {TOPICS[p['topic']][0]}, not {name}, so it does not help with "
                       "this question.",
                       f"The passage discusses {TOPICS[p['topic']][0]}; nothing in it concerns {aspect}."])


def comparison_reason(t: int, f: int, a: dict, b: dict) -> str:
    name, aspect = TOPICS[t][0], TOPICS[t][2][f][1]

    def what(p: dict) -> str:
        g = grade(t, f, p)
        if g == 3:
            return f"explains {aspect} directly"
        if g == 2:
            return f"only hints at {aspect}"
        if g == 1:
            return f"stays on {name} without explaining {aspect}"
        return f"is about {TOPICS[p['topic']][0]}"

    better = 1 if grade(t, f, a) > grade(t, f, b) else 2
    return f"Passage [1] {what(a)}, while passage [2] {what(b)}, so passage [{better}] is the better answer."


def make(out: Path) -> dict[str, int]:
    rng = random.Random(SEED)
    passages = build_passages(rng)
    bm25 = BM25([p["text"] for p in passages])
    records, dev, qrels = [], [], []
    for t, (_, _, facts) in enumerate(TOPICS):
        for f, (query, _, _, _) in enumerate(facts):
            qid = f"demo-q{t:02d}{f}"
            if f < TRAIN_FACTS:
                hits = bm25.top(query, TRAIN_K)
                answer = next(i for i, p in enumerate(passages) if grade(t, f, p) == 3)
                if answer not in [i for i, _ in hits]:  # teacher data always holds the answer passage
                    hits[-1] = (answer, 0.0)
                cands = [Candidate(passages[i]["docid"], passages[i]["text"], s) for i, s in hits]
                by_doc = {passages[i]["docid"]: passages[i] for i, _ in hits}
                order = sorted(hits, key=lambda h: (-grade(t, f, passages[h[0]]), -h[1], h[0]))
                ranking = [passages[i]["docid"] for i, _ in order]
                reasons = {d: direct_reason(t, f, by_doc[d], rng) for d in ranking}
                comparisons = []
                for hi, lo in zip(ranking[:3], ranking[1:4], strict=True):
                    if grade(t, f, by_doc[hi]) > grade(t, f, by_doc[lo]):
                        pair = [hi, lo] if rng.random() < 0.5 else [lo, hi]
                        text = comparison_reason(t, f, by_doc[pair[0]], by_doc[pair[1]])
                        comparisons.append(Comparison(pair, hi, text))
                teacher = {"model": "templated-demo-teacher", "prompt_version": "demo/1",
                           "note": "reasons templated from known grades by tools/make_demo_data.py"}
                records.append(TeacherRecord(qid, query, cands, ranking, reasons, comparisons, teacher))
            else:
                hits = bm25.top(query, DEV_K)
                dev.append(QueryCandidates(qid, query, [ScoredPassage(passages[i]["docid"], passages[i]["text"], s)
                                                        for i, s in hits]))
                judged = {i for i, _ in hits} | {i for i, p in enumerate(passages) if p["topic"] == t}
                qrels += [f"{qid} 0 {passages[i]['docid']} {grade(t, f, passages[i])}" for i in sorted(judged)]
    out.mkdir(parents=True, exist_ok=True)
    write_records(out / "teacher.jsonl", records)
    write_candidates(out / "dev_candidates.jsonl", dev)
    (out / "dev_qrels.txt").write_text("\n".join(qrels) + "\n", encoding="utf-8")
    for name in ("teacher.jsonl", "dev_candidates.jsonl", "dev_qrels.txt"):
        (out / name).chmod(0o644)  # the atomic writers create 0600 files; package data must be world-readable
    return {"passages": len(passages), "train_queries": len(records), "dev_queries": len(dev),
            "qrels_lines": len(qrels)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(ROOT / "r2r_jax" / "demo_data"))
    args = parser.parse_args()
    print(make(Path(args.out)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
